//! A JSON object described once ([`Object`]) and written two ways: through serde, for a
//! `serde_json::Value` ([`Serde`]), or straight into a line's bytes ([`write`]), its keys as
//! they are. serde_json escapes every string it writes, keys included, a call into the writer
//! for each quote, key and colon: with some 70 keys a frame that was a fifth of `--json`'s
//! CPU under the bench's flood (`perf`, BENCHMARKS.md "The reader against its floor").
//! Values still go through serde_json, escaped.

use serde::{Serialize, Serializer, ser::SerializeMap};

/// Where an object's fields go.
pub trait Fields {
    /// What writing a field can fail with.
    type Error;
    /// One field. `key` is a fixed name that JSON need not escape.
    fn field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Self::Error>;
    /// One field whose value is an object (`null` for `None`).
    fn object<O: Object>(
        &mut self,
        key: &'static str,
        value: Option<&O>,
    ) -> Result<(), Self::Error>;
}

/// A JSON object: its fields, in the order they are written.
pub trait Object {
    /// Give each field to `f`.
    fn fields<F: Fields>(&self, f: &mut F) -> Result<(), F::Error>;
}

/// An [`Object`] as serde sees it: a map.
pub struct Serde<'o, O>(pub &'o O);

impl<O: Object> Serialize for Serde<'_, O> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = MapFields(s.serialize_map(None)?);
        self.0.fields(&mut map)?;
        map.0.end()
    }
}

/// Fields into a serde map.
struct MapFields<M>(M);

impl<M: SerializeMap> Fields for MapFields<M> {
    type Error = M::Error;
    fn field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), M::Error> {
        self.0.serialize_entry(key, value)
    }
    fn object<O: Object>(&mut self, key: &'static str, value: Option<&O>) -> Result<(), M::Error> {
        self.0.serialize_entry(key, &value.map(Serde))
    }
}

/// Append `object` to `out` as JSON, keys as they are.
pub fn write<O: Object>(out: &mut Vec<u8>, object: &O) -> Result<(), serde_json::Error> {
    out.push(b'{');
    object.fields(&mut Line { out, first: true })?;
    out.push(b'}');
    Ok(())
}

/// Fields into a line's bytes.
struct Line<'b> {
    out: &'b mut Vec<u8>,
    first: bool,
}

impl Line<'_> {
    fn key(&mut self, key: &'static str) {
        debug_assert!(
            key.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\'),
            "a key JSON would escape: {key:?}"
        );
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
    }
}

impl Fields for Line<'_> {
    type Error = serde_json::Error;
    fn field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), serde_json::Error> {
        self.key(key);
        serde_json::to_writer(&mut *self.out, value)
    }
    fn object<O: Object>(
        &mut self,
        key: &'static str,
        value: Option<&O>,
    ) -> Result<(), serde_json::Error> {
        self.key(key);
        if let Some(object) = value {
            write(self.out, object)
        } else {
            self.out.extend_from_slice(b"null");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Inner(u32);
    impl Object for Inner {
        fn fields<F: Fields>(&self, f: &mut F) -> Result<(), F::Error> {
            f.field("n", &self.0)?;
            f.field("text", "a \"quoted\"\n\\ line")
        }
    }

    struct Outer;
    impl Object for Outer {
        fn fields<F: Fields>(&self, f: &mut F) -> Result<(), F::Error> {
            f.field("a", &1.5)?;
            f.object("inner", Some(&Inner(7)))?;
            f.object::<Inner>("none", None)?;
            f.field("list", &[1, 2, 3])?;
            f.object("empty", Some(&Empty))
        }
    }

    struct Empty;
    impl Object for Empty {
        fn fields<F: Fields>(&self, _: &mut F) -> Result<(), F::Error> {
            Ok(())
        }
    }

    #[test]
    fn an_object_written_as_bytes_is_the_object_serde_writes() {
        let mut line = Vec::new();
        write(&mut line, &Outer).unwrap();
        assert_eq!(
            String::from_utf8(line.clone()).unwrap(),
            r#"{"a":1.5,"inner":{"n":7,"text":"a \"quoted\"\n\\ line"},"none":null,"list":[1,2,3],"empty":{}}"#
        );
        assert_eq!(serde_json::to_vec(&Serde(&Outer)).unwrap(), line);
    }
}
