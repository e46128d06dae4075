//! A note an operator submits for one feed (`POST /feeds/AUTHOR/checkpoint`), e.g. the
//! served note with a `--witness-key` witness's cosignature added: offered by the very path
//! a peer's note takes ([`CheckpointBook::offer`]), after the checks that refuse it whole.

use crate::identity::Author;
use crate::tlog::author_checkpoint::AuthorCheckpoint;
use crate::tlog::checkpoint::SignedCheckpoint;
use crate::tlog::cosignature::CosignatureVerifier;

use super::offer::parse_note;
use super::{CheckpointBook, CheckpointOfferError, NoteOutcome};

impl CheckpointBook {
    /// A note an operator submits for `feed` (`POST /feeds/AUTHOR/checkpoint`), e.g. the
    /// served note with a C2SP witness's cosignature added: offered exactly as a peer's note
    /// ([`CheckpointBook::offer`]), after two checks that refuse it whole, before anything
    /// of it is kept, so that a submitter learns of a mistake instead of a silent drop:
    /// its origin must be `feed`'s, and every line under a key the book knows (a kappalog
    /// node's, a configured witness's) must verify. Lines under unknown names are dropped
    /// and counted, as from a peer.
    pub fn submit(&self, feed: &Author, note: &[u8]) -> Result<NoteOutcome, CheckpointOfferError> {
        self.counted("a submitted note", || {
            let (author, signed) = parse_note(note)?;
            if author != *feed {
                return Err(CheckpointOfferError::OtherFeed {
                    feed: *feed,
                    origin: signed.checkpoint().origin().to_owned(),
                });
            }
            if self.inner.reader.head(&author).is_some() && !self.is_forked(&author) {
                AuthorCheckpoint::verify(&signed)?;
                self.check_known_lines(&signed)?;
            }
            self.offer_parsed(author, &signed)
        })
    }

    /// Every line but the author's whose key the book knows verifies (what
    /// [`CheckpointBook::submit`] requires).
    fn check_known_lines(&self, signed: &SignedCheckpoint) -> Result<(), CheckpointOfferError> {
        let checkpoint = signed.checkpoint();
        for line in signed.note().signatures() {
            if line.name() == checkpoint.origin() {
                continue;
            }
            let Some(vkey) = self.inner.keys.resolve(line) else {
                continue;
            };
            let verifies = CosignatureVerifier::new(vkey)
                .ok()
                .and_then(|v| v.verify_line(checkpoint.body(), line))
                .is_some();
            if !verifies {
                return Err(CheckpointOfferError::BadCosignature {
                    name: line.name().to_owned(),
                });
            }
        }
        Ok(())
    }
}
