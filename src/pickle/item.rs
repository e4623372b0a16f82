//! A stored item: the standalone pickle of one value a client sent.
//!
//! Most queued items are small (a task id, a short tuple): those are kept
//! inline, in the 24 bytes the handle takes anyway, with no heap block of
//! their own. Larger ones are shared (`Arc`), so handing one out to a
//! reply, a dict iterator or a `#GETVALUE` never copies it; a large one
//! keeps the buffer it was cut into (no copy into a new block).

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

/// Bytes kept inline: the largest that keeps `Item` at 24 bytes.
const INLINE: usize = 22;

/// From this size on, the `Vec` an item was cut into is kept as it is:
/// copying it into an `Arc<[u8]>` would cost more than its extra header.
const KEEP_BUFFER: usize = 4096;

#[derive(Clone)]
pub struct Item(Repr);

#[derive(Clone)]
enum Repr {
    Inline { len: u8, bytes: [u8; INLINE] },
    Shared(Arc<[u8]>),
    Large(Arc<Vec<u8>>),
}

impl Item {
    fn from_slice(bytes: &[u8]) -> Item {
        if bytes.len() <= INLINE {
            let mut inline = [0; INLINE];
            inline[..bytes.len()].copy_from_slice(bytes);
            Item(Repr::Inline { len: bytes.len() as u8, bytes: inline })
        } else {
            Item(Repr::Shared(Arc::from(bytes)))
        }
    }
}

impl Deref for Item {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline { len, bytes } => &bytes[..*len as usize],
            Repr::Shared(b) => b,
            Repr::Large(v) => v,
        }
    }
}

impl AsRef<[u8]> for Item {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl From<Vec<u8>> for Item {
    fn from(v: Vec<u8>) -> Item {
        match v.len() {
            n if n >= KEEP_BUFFER => {
                let mut v = v;
                // Shrinking a large block is done in place by the allocator.
                v.shrink_to_fit();
                Item(Repr::Large(Arc::new(v)))
            }
            _ => Item::from_slice(&v),
        }
    }
}

impl From<&[u8]> for Item {
    fn from(b: &[u8]) -> Item {
        Item::from_slice(b)
    }
}

impl PartialEq for Item {
    fn eq(&self, other: &Item) -> bool {
        **self == **other
    }
}

impl Eq for Item {}

impl std::hash::Hash for Item {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (**self).hash(state)
    }
}

impl fmt::Debug for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Item({:?})", &**self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_items_are_inline_and_large_ones_shared() {
        assert_eq!(std::mem::size_of::<Item>(), 24);
        let small = Item::from(vec![0x80, 4, b'K', 5, b'.']);
        assert!(matches!(small.0, Repr::Inline { .. }));
        assert_eq!(&*small, &[0x80, 4, b'K', 5, b'.']);
        let big = Item::from(vec![7u8; 100]);
        assert!(matches!(big.0, Repr::Shared(_)));
        assert_eq!(big.len(), 100);
        assert_eq!(big.clone(), big);
        assert_eq!(Item::from(&[1u8; 22][..]).len(), 22);
        assert_eq!(Item::from(&[1u8; 23][..]).len(), 23);
        let large = Item::from(vec![9u8; KEEP_BUFFER]);
        assert!(matches!(large.0, Repr::Large(_)));
        assert_eq!(large.len(), KEEP_BUFFER);
    }
}
