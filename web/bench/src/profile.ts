// Summaries of a Chromium CPU profile (CDP `Profiler.stop`) of the benchmark page: self
// time by source module of the bundle and by function, and total (inclusive) time of the
// heaviest functions. The page bundle is not minified, so esbuild's `// path` comments tell
// which module each line of it came from.

export interface CpuProfile {
  nodes: {
    id: number;
    callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
    children?: number[];
  }[];
  startTime: number;
  endTime: number;
  samples?: number[];
  timeDeltas?: number[];
}

/** For every line of an esbuild bundle, the module it came from (its `// path` comment) and where that starts. */
export function moduleLines(bundle: string): { module: string; start: number }[] {
  const out: { module: string; start: number }[] = [];
  let current = { module: "(bundle)", start: 0 };
  bundle.split("\n").forEach((line, i) => {
    const m = /^\/\/ (\S+\.(?:ts|js|mjs|cjs))$/.exec(line);
    if (m !== null) current = { module: shortModule(m[1] as string), start: i };
    out.push(current);
  });
  return out;
}

/** `node_modules/@bufbuild/protobuf/dist/esm/wire/binary-encoding.js` → `@bufbuild/protobuf wire/binary-encoding.js`. */
function shortModule(path: string): string {
  const nm = path.lastIndexOf("node_modules/");
  if (nm < 0) return path.replace(/^(\.\.\/)+/, "");
  const rest = path.slice(nm + "node_modules/".length).split("/");
  const pkg = rest[0]?.startsWith("@") ? `${rest[0]}/${rest[1]}` : (rest[0] ?? "");
  const file = rest.slice(rest[0]?.startsWith("@") ? 2 : 1).filter((p) => p !== "dist" && p !== "esm" && p !== "cjs");
  return `${pkg} ${file.join("/")}`;
}

/** Whose code a module is: the client libraries, protobuf, the page, the engine. */
function group(mod: string): string {
  if (mod.includes("client/src/")) return "@weir/client";
  if (mod.startsWith("@connectrpc/connect-web")) return "@connectrpc/connect-web";
  if (mod.startsWith("@connectrpc/connect")) return "@connectrpc/connect (client, call runner)";
  if (mod.startsWith("@bufbuild/protobuf")) return "@bufbuild/protobuf (encode request, decode messages)";
  if (mod.startsWith("grpc-web")) return "grpc-web";
  if (mod.startsWith("browser/") || mod.startsWith("interop/")) return "benchmark page";
  if (mod === "(garbage collector)") return mod;
  return "engine: (program), built-ins, other";
}

const ms = (us: number) => (us / 1000).toFixed(1);
const pct = (us: number, total: number) => `${((us / total) * 100).toFixed(1)}%`;

/** A Markdown summary: self time by module, the top functions by self and by total time. */
export function summarize(profile: CpuProfile, bundle: string, top = 12): string {
  const lines = moduleLines(bundle);
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const isBundle = (url: string) => /\/(page|baseline)\.js$/.test(url);
  const moduleOf = (id: number): string => {
    const f = byId.get(id)?.callFrame;
    if (f === undefined) return "?";
    if (isBundle(f.url)) return lines[f.lineNumber]?.module ?? "(bundle)";
    if (f.url === "") return f.functionName.startsWith("(") ? f.functionName : "(V8/Blink built-ins)";
    return "(other scripts)";
  };
  const fnOf = (id: number): string => {
    const f = byId.get(id)?.callFrame;
    if (f === undefined) return "?";
    const name = f.functionName === "" ? "(anonymous)" : f.functionName;
    // The line within the bundled module (esbuild keeps each module's code, less its imports).
    return isBundle(f.url) ? `${name} — ${moduleOf(id)} (+${f.lineNumber - (lines[f.lineNumber]?.start ?? 0)})` : name;
  };

  const selfByModule = new Map<string, number>();
  const selfByFn = new Map<string, number>();
  const totalByFn = new Map<string, number>();
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  let busy = 0;
  for (let i = 0; i < samples.length; i++) {
    const id = samples[i] as number;
    const dt = deltas[i + 1] ?? 0;
    const mod = moduleOf(id);
    if (mod === "(idle)") continue;
    busy += dt;
    selfByModule.set(mod, (selfByModule.get(mod) ?? 0) + dt);
    const fn = fnOf(id);
    selfByFn.set(fn, (selfByFn.get(fn) ?? 0) + dt);
    const seen = new Set<string>();
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const f = fnOf(at);
      if (f.startsWith("(root)") || seen.has(f)) continue;
      seen.add(f);
      totalByFn.set(f, (totalByFn.get(f) ?? 0) + dt);
    }
  }
  const sorted = (m: Map<string, number>) => [...m].sort((a, b) => b[1] - a[1]);
  const byGroup = new Map<string, number>();
  for (const [mod, v] of selfByModule) byGroup.set(group(mod), (byGroup.get(group(mod)) ?? 0) + v);
  const out = [`Busy (non-idle) time sampled: ${ms(busy)} ms.`, "", "| code | self ms | share |", "|---|---:|---:|"];
  for (const [k, v] of sorted(byGroup)) out.push(`| ${k} | ${ms(v)} | ${pct(v, busy)} |`);
  out.push("", "| module | self ms | share |", "|---|---:|---:|");
  for (const [k, v] of sorted(selfByModule).slice(0, top)) out.push(`| ${k} | ${ms(v)} | ${pct(v, busy)} |`);
  out.push("", "| function (self) | self ms | share |", "|---|---:|---:|");
  for (const [k, v] of sorted(selfByFn).slice(0, top)) out.push(`| ${k} | ${ms(v)} | ${pct(v, busy)} |`);
  out.push("", "| function (total, callees included) | total ms | share |", "|---|---:|---:|");
  for (const [k, v] of sorted(totalByFn).slice(0, top)) out.push(`| ${k} | ${ms(v)} | ${pct(v, busy)} |`);
  return `${out.join("\n")}\n`;
}
