//! Group names to gids from /etc/group (group(5)), for `listen.socket_group`.
//! Only the local file is read, not NSS: a group that only a directory
//! service knows is given by its numeric gid instead.

/// The local group database.
pub const GROUP_FILE: &str = "/etc/group";

/// The gid of group `name` in the text of a group(5) file, if it is there.
///
/// Lines are `name:password:gid:members`; blank lines, comments and NIS
/// `+`/`-` lines are skipped, and a line whose gid is not a number is
/// ignored rather than guessed at.
pub fn gid_of(contents: &str, name: &str) -> Option<u32> {
    contents.lines().find_map(|line| {
        if line.is_empty() || line.starts_with(['#', '+', '-']) {
            return None;
        }
        let mut fields = line.split(':');
        let (Some(group), Some(_password), Some(gid)) =
            (fields.next(), fields.next(), fields.next())
        else {
            return None;
        };
        if group != name {
            return None;
        }
        gid.trim().parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
root:x:0:
# a comment
+nisgroup::
daemon:x:1:
rkm-admins:x:995:alice,bob

broken:x:
nogid:x:abc:
rkm:x:996:
";

    #[test]
    fn finds_the_gid_of_a_listed_group() {
        assert_eq!(gid_of(SAMPLE, "rkm-admins"), Some(995));
        assert_eq!(gid_of(SAMPLE, "root"), Some(0));
        assert_eq!(gid_of(SAMPLE, "rkm"), Some(996));
    }

    #[test]
    fn names_are_matched_whole_not_by_prefix() {
        assert_eq!(gid_of(SAMPLE, "rkm-"), None);
        assert_eq!(gid_of(SAMPLE, "rkm-admin"), None);
        assert_eq!(gid_of(SAMPLE, "admins"), None);
    }

    #[test]
    fn comments_nis_and_malformed_lines_give_nothing() {
        assert_eq!(gid_of(SAMPLE, "+nisgroup"), None);
        assert_eq!(gid_of(SAMPLE, "# a comment"), None);
        assert_eq!(gid_of(SAMPLE, "broken"), None);
        assert_eq!(gid_of(SAMPLE, "nogid"), None);
        assert_eq!(gid_of(SAMPLE, "nobody"), None);
    }

    #[test]
    fn this_machines_group_file_lists_root() {
        let contents = std::fs::read_to_string(GROUP_FILE).unwrap();
        assert_eq!(gid_of(&contents, "root"), Some(0));
    }
}
