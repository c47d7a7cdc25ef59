//! Local image names. A name without a tag means `:latest`; Docker Hub's
//! implicit prefixes are dropped so `docker save` archives import under the
//! names users typed.

/// `busybox` -> `busybox:latest`; `docker.io/library/busybox:1` -> `busybox:1`.
pub fn normalize_name(name: &str) -> String {
    let mut n = name.trim();
    for prefix in [
        "docker.io/library/",
        "index.docker.io/library/",
        "localhost/",
    ] {
        if let Some(rest) = n.strip_prefix(prefix) {
            n = rest;
        }
    }
    if n.contains('@') {
        return n.to_string();
    }
    let last = n.rsplit('/').next().unwrap_or(n);
    if last.contains(':') {
        n.to_string()
    } else {
        format!("{n}:latest")
    }
}

#[cfg(test)]
mod tests {
    use super::normalize_name;

    #[test]
    fn names() {
        assert_eq!(normalize_name("busybox"), "busybox:latest");
        assert_eq!(normalize_name("demo:1"), "demo:1");
        assert_eq!(
            normalize_name("docker.io/library/busybox:1.36"),
            "busybox:1.36"
        );
        assert_eq!(
            normalize_name("127.0.0.1:5000/a/b"),
            "127.0.0.1:5000/a/b:latest"
        );
    }
}
