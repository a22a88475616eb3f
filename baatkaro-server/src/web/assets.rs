//! The web client's built bundle (`web/dist`, committed), embedded in the binary so
//! that the server serves it with no Node.js and no files beside it.

use std::sync::LazyLock;

use sha2::{Digest, Sha256};

/// One file of the bundle.
pub(crate) struct Asset {
    /// Its path on the web listener.
    pub(crate) path: &'static str,
    /// Its `Content-Type`.
    pub(crate) content_type: &'static str,
    /// Its bytes.
    pub(crate) body: &'static [u8],
}

macro_rules! bundle {
    ($($path:literal => $file:literal, $type:literal;)*) => {
        /// Every file of the bundle. Vite writes them under fixed names (see
        /// `web/vite.config.ts`), which are the names here.
        pub(crate) static ASSETS: &[Asset] = &[$(
            Asset {
                path: $path,
                content_type: $type,
                body: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../web/dist/", $file)),
            },
        )*];
    };
}

bundle! {
    "/" => "index.html", "text/html; charset=utf-8";
    "/app.js" => "app.js", "text/javascript; charset=utf-8";
    "/app.css" => "app.css", "text/css; charset=utf-8";
}

/// The entity tag of each asset, in [`ASSETS`]'s order: a hash of its bytes, so
/// that a browser revalidates cheaply and never keeps a stale bundle after an
/// upgrade (the names do not change between versions).
static ETAGS: LazyLock<Vec<String>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|a| {
            let digest = Sha256::digest(a.body);
            let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
            format!("\"{hex}\"")
        })
        .collect()
});

/// The asset served at `path` (`/index.html` is `/`), with its entity tag.
pub(crate) fn find(path: &str) -> Option<(&'static Asset, &'static str)> {
    let path = if path == "/index.html" { "/" } else { path };
    let at = ASSETS.iter().position(|a| a.path == path)?;
    Some((&ASSETS[at], ETAGS[at].as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_and_its_script_are_embedded() {
        let (page, tag) = find("/").unwrap();
        let html = std::str::from_utf8(page.body).unwrap();
        assert!(html.contains("app.js"), "the page loads the bundle: {html}");
        assert_eq!(find("/index.html").unwrap().1, tag);
        assert!(!find("/app.js").unwrap().0.body.is_empty());
        assert!(find("/nothing").is_none());
    }
}
