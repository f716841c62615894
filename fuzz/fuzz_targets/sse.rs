//! The SSE parser on arbitrary bytes split at an arbitrary point: no panic,
//! and the same events whatever the split.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_core::sse::Parser;

fuzz_target!(|input: (u16, Vec<u8>)| {
    let (cut, data) = input;
    let cut = usize::from(cut) % (data.len() + 1);
    let whole = {
        let mut p = Parser::new(1 << 16);
        let mut ev = p.push(&data);
        if let Ok(ev) = &mut ev {
            ev.extend(p.finish().0);
        }
        ev
    };
    let split = {
        let mut p = Parser::new(1 << 16);
        match p.push(&data[..cut]) {
            Ok(mut a) => match p.push(&data[cut..]) {
                Ok(b) => {
                    a.extend(b);
                    a.extend(p.finish().0);
                    Ok(a)
                }
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        }
    };
    if let (Ok(a), Ok(b)) = (whole, split) {
        assert_eq!(a, b);
    }
});
