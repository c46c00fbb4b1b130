//! Splits a fuzz input into the pieces a TCP stream might deliver it in, so
//! the session cores are fuzzed across every line and DATA boundary.

/// `data` in pieces chosen by `seed`: 0 hands it over whole; otherwise
/// pieces of 1 to `seed` octets, their sizes drawn from a small LCG.
pub fn split(data: &[u8], seed: u8) -> impl Iterator<Item = &[u8]> {
    let max = usize::from(seed);
    let mut state = u32::from(seed);
    let mut rest = data;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let n = if max == 0 {
            rest.len()
        } else {
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            1 + (state >> 16) as usize % max
        };
        let (piece, tail) = rest.split_at(n.min(rest.len()));
        rest = tail;
        Some(piece)
    })
}
