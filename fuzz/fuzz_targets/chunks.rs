//! Ways to cut one input into the chunks a network delivers, shared by the targets whose
//! property is "the same outcome however the bytes arrive".

/// The input whole; cut in two at `split`; in pieces of 1 to 16 bytes (by `step`); and byte
/// by byte.
pub fn chunkings(step: u8, split: u16, data: &[u8]) -> [Vec<&[u8]>; 4] {
    let at = usize::from(split) % (data.len() + 1);
    let size = usize::from(step % 16) + 1;
    [
        vec![data],
        vec![&data[..at], &data[at..]],
        data.chunks(size).collect(),
        data.chunks(1).collect(),
    ]
}
