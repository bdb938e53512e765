//! Name patterns over state-dict paths (`transformer.h.*.attn.*`), shared by LoRA's
//! [`apply`](super::lora::apply) and [`freeze`](super::freeze()).

/// Whether `path` matches `pattern`, where `*` stands for any run of characters (dots included):
/// `*.attn.c_attn`, `transformer.h.*.attn.*`, `*`.
pub(crate) fn glob(pattern: &str, path: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == path,
        Some((head, rest)) => {
            path.starts_with(head)
                && (0..=path.len() - head.len())
                    .filter(|&i| path.is_char_boundary(head.len() + i))
                    .any(|i| glob(rest, &path[head.len() + i..]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn globs_match_dotted_paths() {
        assert!(glob("*", "transformer.h.0.attn.c_attn"));
        assert!(glob("*.attn.c_attn", "transformer.h.0.attn.c_attn"));
        assert!(glob("transformer.h.*.attn.*", "transformer.h.11.attn.c_proj"));
        assert!(!glob("*.attn.c_attn", "transformer.h.0.attn.c_proj"));
        assert!(!glob("attn", "transformer.h.0.attn"));
        assert!(glob("*attn*", "transformer.h.0.attn.c_proj"));
    }
}
