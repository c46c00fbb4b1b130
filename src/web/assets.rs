//! The dashboard's files (`src/web/assets/`), embedded in the binary so
//! `mailnet up --web` needs nothing beside it and loads nothing from a CDN.
//!
//! The app is Preact + htm as plain ES modules, no build step: the vendored
//! libraries come from the npm registry at pinned versions
//! (`assets/vendor/update.sh` fetches them again, `--check` compares).
//! Routing is by URL fragment (`#/mailbox/…`), so the only paths served here
//! are the files themselves. The web server (`super::static_file`) serves
//! them with a strict Content-Security-Policy; nothing here is inline.

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const SVG: &str = "image/svg+xml";
const TEXT: &str = "text/plain; charset=utf-8";

macro_rules! files {
    ($($path:literal => $ctype:expr),* $(,)?) => {
        /// Every file: its path under `assets/`, content type and bytes.
        const FILES: &[(&str, &str, &[u8])] = &[
            $(($path, $ctype, include_bytes!(concat!("assets/", $path)))),*
        ];
    };
}

files! {
    "index.html" => HTML,
    "favicon.svg" => SVG,
    "style.css" => CSS,
    "app.js" => JS,
    "bus.js" => JS,
    "lib.js" => JS,
    "views/events.js" => JS,
    "views/mailbox.js" => JS,
    "views/message.js" => JS,
    "views/network.js" => JS,
    "views/path.js" => JS,
    "views/queue.js" => JS,
    "views/runs.js" => JS,
    "views/sandbox.js" => JS,
    "views/sessions.js" => JS,
    "vendor/preact.mjs" => JS,
    "vendor/hooks.mjs" => JS,
    "vendor/htm.mjs" => JS,
    "vendor/LICENSE-preact" => TEXT,
    "vendor/LICENSE-htm" => TEXT,
}

/// The file at `path` (the URL path without its leading `/`; `""` is
/// `index.html`): its content type and bytes, or None.
pub fn asset(path: &str) -> Option<(&'static str, &'static [u8])> {
    let path = match path {
        "" => "index.html",
        // browsers ask for it unprompted; the SVG icon does
        "favicon.ico" => "favicon.svg",
        other => other,
    };
    FILES
        .iter()
        .find(|(name, _, _)| *name == path)
        .map(|(_, ctype, bytes)| (*ctype, *bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn dir() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("src/web/assets")
    }

    fn walk(root: &Path, here: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(here).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path.strip_prefix(root).unwrap().to_string_lossy();
                out.push(rel.replace('\\', "/"));
            }
        }
    }

    #[test]
    fn every_file_of_the_folder_is_embedded_and_nothing_else() {
        let mut on_disk = Vec::new();
        walk(&dir(), &dir(), &mut on_disk);
        // the script that fetches the vendored files is not part of the site
        on_disk.retain(|p| p != "vendor/update.sh");
        on_disk.sort();
        let mut embedded: Vec<String> = FILES.iter().map(|(p, _, _)| p.to_string()).collect();
        embedded.sort();
        assert_eq!(on_disk, embedded);
    }

    #[test]
    fn every_module_import_names_an_embedded_file() {
        for (path, ctype, bytes) in FILES {
            if *ctype != JS {
                continue;
            }
            let text = std::str::from_utf8(bytes).unwrap();
            let base = Path::new(path).parent().unwrap();
            // `from './x.js'`, `from"./x.mjs"`: relative specifiers only, no bare names
            for quote in ['\'', '"'] {
                for (i, _) in text
                    .match_indices(&format!("from{quote}"))
                    .chain(text.match_indices(&format!("from {quote}")))
                {
                    let rest = &text[i..];
                    let start = rest.find(quote).unwrap() + 1;
                    let len = rest[start..].find(quote).unwrap();
                    let spec = &rest[start..start + len];
                    assert!(
                        spec.starts_with("./") || spec.starts_with("../"),
                        "{path}: import of {spec:?} (a browser cannot resolve bare names)"
                    );
                    let mut target = base.to_path_buf();
                    for part in spec.split('/') {
                        match part {
                            "." => {}
                            ".." => {
                                target.pop();
                            }
                            p => target.push(p),
                        }
                    }
                    let target = target.to_string_lossy().replace('\\', "/");
                    assert!(
                        asset(&target).is_some(),
                        "{path}: imports {spec:?} = {target}, which is not embedded"
                    );
                }
            }
        }
    }

    #[test]
    fn the_page_links_its_files_and_inlines_nothing() {
        let (ctype, bytes) = asset("").unwrap();
        assert_eq!(ctype, HTML);
        let page = std::str::from_utf8(bytes).unwrap();
        for linked in ["favicon.svg", "style.css", "app.js"] {
            assert!(page.contains(&format!("\"{linked}\"")), "{linked}");
            assert!(asset(linked).is_some(), "{linked}");
        }
        // the CSP allows no inline script: every <script> has a src
        assert_eq!(
            page.matches("<script").count(),
            page.matches("<script type=\"module\" src=").count()
        );
        assert!(!page.contains("style=\""));
        assert!(
            !page.contains("http://") && !page.contains("https://"),
            "nothing off this origin"
        );
        assert_eq!(asset("favicon.ico").unwrap().0, SVG);
        assert!(asset("vendor/update.sh").is_none());
        assert!(asset("nope.js").is_none());
        assert!(asset("../Cargo.toml").is_none());
    }

    #[test]
    fn the_html_frame_keeps_its_sandbox_and_policy() {
        let message = std::str::from_utf8(asset("views/message.js").unwrap().1).unwrap();
        assert!(
            message.contains("sandbox=\"\""),
            "the HTML part's frame is sandboxed with no allowances"
        );
        assert!(!message.contains("allow-scripts") && !message.contains("allow-same-origin"));
        let sandbox = std::str::from_utf8(asset("views/sandbox.js").unwrap().1).unwrap();
        assert!(sandbox.contains(
            "FRAME_CSP = \"default-src 'none'; img-src data:; style-src 'unsafe-inline'\""
        ));
    }
}
