// A TCP proxy that behaves like the idle timeout of a load balancer: it
// forwards bytes both ways and closes both sockets of a connection once no
// byte has passed in either direction for `idleMs`.

import * as net from "node:net";

export interface IdleProxy {
  /** http://127.0.0.1:PORT, to use instead of the target's URL. */
  readonly url: string;
  /** Connections closed because they were idle. */
  idleClosures(): number;
  close(): Promise<void>;
}

export async function startIdleProxy(target: string, idleMs: number): Promise<IdleProxy> {
  const { hostname, port } = new URL(target);
  const sockets = new Set<net.Socket>();
  let closures = 0;
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(port), hostname);
    sockets.add(client);
    sockets.add(upstream);
    let timer: NodeJS.Timeout | undefined;
    const closeBoth = () => {
      clearTimeout(timer);
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    const touch = () => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        closures++;
        closeBoth();
      }, idleMs);
    };
    touch();
    client.on("data", (b: Buffer) => {
      touch();
      if (!upstream.write(b)) client.pause();
    });
    upstream.on("data", (b: Buffer) => {
      touch();
      if (!client.write(b)) upstream.pause();
    });
    client.on("drain", () => upstream.resume());
    upstream.on("drain", () => client.resume());
    client.on("end", () => upstream.end());
    upstream.on("end", () => client.end());
    for (const s of [client, upstream]) {
      s.on("error", closeBoth);
      s.on("close", closeBoth);
    }
  });
  await new Promise<void>((ok, fail) => {
    server.once("error", fail);
    server.listen(0, "127.0.0.1", ok);
  });
  const addr = server.address() as net.AddressInfo;
  return {
    url: `http://127.0.0.1:${addr.port}`,
    idleClosures: () => closures,
    close: () =>
      new Promise<void>((ok) => {
        for (const s of sockets) s.destroy();
        server.close(() => ok());
      }),
  };
}
