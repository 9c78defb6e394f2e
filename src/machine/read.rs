//! The reader's decisions that need no file to make: where reading goes on when the file
//! it had reached no longer holds what was read there.

/// Where to read from, and up to where the rows read are in doubt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resume {
    pub offset: u64,
    /// Rows starting before this offset are read again (0: none).
    pub replay_until: u64,
}

/// `reached`: where reading had got in the file; `holds`: the bytes just before it are
/// still the ones read there (the fingerprint); `len`: the file's length now.
///
/// A file that no longer holds them shrank (a power cut took back what Asterisk never
/// synced, a truncation without a copy) or was rewritten (an editor, `sed -i`): it is
/// read again from the start, and every row up to where reading had got, or up to the
/// file's end if it is longer now (an edit may have moved old rows further on), may be
/// one already shipped: in doubt, resolved with the server, never sent blindly.
pub fn resume_in(reached: u64, holds: bool, len: u64) -> Resume {
    if holds {
        Resume {
            offset: reached,
            replay_until: 0,
        }
    } else {
        Resume {
            offset: 0,
            replay_until: reached.max(len),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_that_still_holds_what_was_read_goes_on_where_it_was() {
        assert_eq!(
            resume_in(500, true, 900),
            Resume {
                offset: 500,
                replay_until: 0
            }
        );
    }

    #[test]
    fn a_shorter_or_rewritten_file_is_read_again_in_doubt_up_to_the_furthest_point() {
        assert_eq!(
            resume_in(500, false, 300),
            Resume {
                offset: 0,
                replay_until: 500
            }
        );
        assert_eq!(
            resume_in(500, false, 800),
            Resume {
                offset: 0,
                replay_until: 800
            }
        );
    }
}
