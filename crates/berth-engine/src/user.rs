//! `-u user[:group]` resolved against the container's /etc/passwd and /etc/group.

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UserError {
    #[error("unable to find user {0}: no matching entries in passwd file")]
    NoUser(String),
    #[error("unable to find group {0}: no matching entries in group file")]
    NoGroup(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
}

fn passwd_entries(passwd: &str) -> impl Iterator<Item = (&str, u32, u32)> {
    passwd.lines().filter_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 4 {
            return None;
        }
        Some((f[0], f[2].parse().ok()?, f[3].parse().ok()?))
    })
}

fn group_entries(group: &str) -> impl Iterator<Item = (&str, u32, Vec<&str>)> {
    group.lines().filter_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 3 {
            return None;
        }
        let members = f
            .get(3)
            .map(|m| m.split(',').filter(|x| !x.is_empty()).collect())
            .unwrap_or_default();
        Some((f[0], f[2].parse().ok()?, members))
    })
}

fn lookup_group(g: &str, group: &str) -> Result<u32, UserError> {
    if let Ok(n) = g.parse::<u32>() {
        return Ok(n);
    }
    group_entries(group)
        .find(|(name, _, _)| *name == g)
        .map(|(_, gid, _)| gid)
        .ok_or_else(|| UserError::NoGroup(g.to_string()))
}

/// Resolves `user[:group]` (names or numbers; empty = root) plus `--group-add`.
/// Supplementary groups are the user's memberships in /etc/group, as Docker does.
pub fn resolve(
    spec: &str,
    group_add: &[String],
    passwd: &str,
    group: &str,
) -> Result<ResolvedUser, UserError> {
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let u = if u.is_empty() { "0" } else { u };
    let (uid, mut gid, name) = if let Ok(n) = u.parse::<u32>() {
        match passwd_entries(passwd).find(|(_, uid, _)| *uid == n) {
            Some((name, uid, gid)) => (uid, gid, Some(name)),
            None => (n, 0, None),
        }
    } else {
        let (name, uid, gid) = passwd_entries(passwd)
            .find(|(name, _, _)| *name == u)
            .ok_or_else(|| UserError::NoUser(u.to_string()))?;
        (uid, gid, Some(name))
    };
    if let Some(g) = g.filter(|g| !g.is_empty()) {
        gid = lookup_group(g, group)?;
    }
    let mut additional = Vec::new();
    if let Some(name) = name {
        if g.is_none() {
            for (_, id, members) in group_entries(group) {
                if members.contains(&name) && id != gid && !additional.contains(&id) {
                    additional.push(id);
                }
            }
        }
    }
    for g in group_add {
        let id = lookup_group(g, group)?;
        if !additional.contains(&id) {
            additional.push(id);
        }
    }
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids: additional,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    const P: &str = "root:x:0:0:root:/root:/bin/sh\nberth:x:1000:1001:b:/h:/bin/sh\n";
    const G: &str = "root:x:0:\nstaff:x:50:berth,x\nberthg:x:1001:\n";

    #[test]
    fn names_numbers_and_errors() {
        let r = resolve("", &[], P, G).unwrap();
        assert_eq!((r.uid, r.gid), (0, 0));
        let r = resolve("berth", &[], P, G).unwrap();
        assert_eq!((r.uid, r.gid, r.additional_gids), (1000, 1001, vec![50]));
        let r = resolve("1000:staff", &[], P, G).unwrap();
        assert_eq!((r.uid, r.gid), (1000, 50));
        let r = resolve("4242:4343", &["root".into()], P, G).unwrap();
        assert_eq!((r.uid, r.gid, r.additional_gids), (4242, 4343, vec![0]));
        assert_eq!(
            resolve("nobody", &[], P, G).unwrap_err().to_string(),
            "unable to find user nobody: no matching entries in passwd file"
        );
        assert!(matches!(
            resolve("root:nogroup", &[], P, G),
            Err(UserError::NoGroup(_))
        ));
    }
}
