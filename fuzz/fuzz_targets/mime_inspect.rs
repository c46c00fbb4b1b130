//! `mailnet inspect` (`mime::describe`) on any message; when it has
//! attachments, they are also extracted, and every file written must lie
//! directly in the folder asked for.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mailnet::mime::describe;

/// A folder of this process's own, emptied before each extraction.
fn folder() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        std::env::temp_dir().join(format!("mailnet-fuzz-mime-{}", std::process::id()))
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok((text, written)) = describe(data, None) else {
        return;
    };
    assert!(written.is_empty());
    if text.contains("\nAttachments: 0\n") {
        return;
    }
    let dir = folder();
    let _ = std::fs::remove_dir_all(dir);
    let Ok((_, written)) = describe(data, Some(dir)) else {
        return;
    };
    for path in written {
        assert_eq!(path.parent(), Some(dir.as_path()), "{path:?} left {dir:?}");
        let name = path.file_name().expect("a file name").to_string_lossy();
        assert!(!name.starts_with('.'), "{path:?} is hidden or a parent");
        assert!(path.is_file(), "{path:?} was not written as a file");
    }
});
