//! Resolving a `USER` value (`uid`, `uid:gid`, `name`, `name:group`) against
//! the `/etc/passwd` and `/etc/group` of the rootfs a container will run on,
//! the way runc and Docker do.

use std::path::Path;

#[derive(Debug, thiserror::Error)]
#[error("user `{0}` is not in the image's /etc/passwd or /etc/group; use a numeric uid[:gid]")]
pub struct UnknownUser(pub String);

/// The most of `/etc/passwd` or `/etc/group` read from an image.
pub const MAX_USER_TABLE: u64 = 1 << 20;

/// `(uid, gid)` for `user` as seen from `rootfs`; `""` is root. The files
/// are resolved inside `rootfs` (an image's `etc/passwd -> /etc/shadow`
/// names the image's own file, never the host's) and read up to
/// [`MAX_USER_TABLE`] bytes; a file that is missing, not regular or larger
/// reads as empty, so only numeric ids resolve.
pub fn resolve_user(rootfs: &Path, user: &str) -> Result<(u32, u32), UnknownUser> {
    let table = |name: &str| {
        zlayer_confined::Confined::open(rootfs)
            .and_then(|root| root.read_capped(Path::new(name), MAX_USER_TABLE))
            .ok()
            .flatten()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    };
    resolve_user_in(&table("etc/passwd"), &table("etc/group"), user)
}

/// Like [`resolve_user`], given the two files' contents.
pub fn resolve_user_in(passwd: &str, group: &str, user: &str) -> Result<(u32, u32), UnknownUser> {
    if user.is_empty() {
        return Ok((0, 0));
    }
    let (u, g) = user
        .split_once(':')
        .map_or((user, None), |(u, g)| (u, Some(g)));
    let (uid, primary) = match u.parse::<u32>() {
        Ok(n) => (n, find(passwd, 2, u).and_then(|f| field(&f, 3))),
        Err(_) => {
            let f = find(passwd, 0, u).ok_or_else(|| UnknownUser(u.into()))?;
            (field(&f, 2).unwrap_or(0), field(&f, 3))
        }
    };
    let gid = match g {
        None => primary.unwrap_or(uid),
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => find(group, 0, g)
                .and_then(|f| field(&f, 2))
                .ok_or_else(|| UnknownUser(g.into()))?,
        },
    };
    Ok((uid, gid))
}

/// The fields of the first line of a colon-separated table whose field `at` is `value`.
fn find(table: &str, at: usize, value: &str) -> Option<Vec<String>> {
    table.lines().find_map(|l| {
        let f: Vec<String> = l.split(':').map(str::to_string).collect();
        (f.get(at).map(String::as_str) == Some(value)).then_some(f)
    })
}

fn field(fields: &[String], i: usize) -> Option<u32> {
    fields.get(i).and_then(|v| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nstaff:x:50:\napp:x:1001:\n";

    #[test]
    fn names_numbers_and_groups() {
        assert_eq!(resolve_user_in(PASSWD, GROUP, "").unwrap(), (0, 0));
        assert_eq!(resolve_user_in(PASSWD, GROUP, "app").unwrap(), (1000, 1001));
        assert_eq!(
            resolve_user_in(PASSWD, GROUP, "1000").unwrap(),
            (1000, 1001)
        );
        assert_eq!(
            resolve_user_in(PASSWD, GROUP, "4242").unwrap(),
            (4242, 4242)
        );
        assert_eq!(
            resolve_user_in(PASSWD, GROUP, "app:staff").unwrap(),
            (1000, 50)
        );
        assert_eq!(resolve_user_in(PASSWD, GROUP, "7:8").unwrap(), (7, 8));
        assert!(resolve_user_in(PASSWD, GROUP, "nobody").is_err());
        assert!(resolve_user_in(PASSWD, GROUP, "app:nogroup").is_err());
    }

    #[test]
    fn the_user_tables_resolve_inside_the_rootfs() {
        let host = tempfile::tempdir().unwrap();
        std::fs::write(
            host.path().join("passwd"),
            "hostonly:x:4242:4242::/:/bin/sh\n",
        )
        .unwrap();
        let rootfs = tempfile::tempdir().unwrap();
        std::fs::create_dir(rootfs.path().join("etc")).unwrap();
        std::os::unix::fs::symlink(host.path().join("passwd"), rootfs.path().join("etc/passwd"))
            .unwrap();
        assert!(resolve_user(rootfs.path(), "hostonly").is_err());
        std::fs::create_dir_all(rootfs.path().join(host.path().strip_prefix("/").unwrap()))
            .unwrap();
        std::fs::write(
            rootfs
                .path()
                .join(host.path().strip_prefix("/").unwrap())
                .join("passwd"),
            "inimage:x:7:7::/:/bin/sh\n",
        )
        .unwrap();
        assert_eq!(resolve_user(rootfs.path(), "inimage").unwrap(), (7, 7));
    }

    #[test]
    fn an_oversized_passwd_is_not_read() {
        let rootfs = tempfile::tempdir().unwrap();
        std::fs::create_dir(rootfs.path().join("etc")).unwrap();
        let mut big = "big:x:9:9::/:/bin/sh\n".to_string();
        big.push_str(&"#".repeat(MAX_USER_TABLE as usize));
        std::fs::write(rootfs.path().join("etc/passwd"), big).unwrap();
        assert!(resolve_user(rootfs.path(), "big").is_err());
        assert_eq!(resolve_user(rootfs.path(), "9").unwrap(), (9, 9));
    }
}
