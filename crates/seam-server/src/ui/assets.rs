//! The dashboard's files, compiled into the binary with `include_bytes!` (a handful of files: a fixed
//! table is simpler than an embedding crate and a missing file fails the build).

/// The app shell (`{{csrf_token}}`, `{{username}}`, `{{version}}` are filled in per request).
pub const INDEX_HTML: &str = include_str!("../../assets/index.html");
/// The sign-in page (`{{error}}`, `{{username}}`, `{{next}}`, `{{signin_token}}`).
pub const SIGNIN_HTML: &str = include_str!("../../assets/signin.html");

const CSS: &str = "text/css; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const SVG: &str = "image/svg+xml";

macro_rules! files {
    ($( $path:literal => $type:expr ),* $(,)?) => {
        /// Every file under `/assets/`: path, content type, bytes.
        pub const FILES: &[(&str, &str, &[u8])] = &[
            $( ($path, $type, include_bytes!(concat!("../../assets/", $path))), )*
        ];
    };
}

files! {
    "app.css" => CSS,
    "favicon.svg" => SVG,
    "zendesk.svg" => SVG,
    "js/app.js" => JS,
    "js/api.js" => JS,
    "js/dom.js" => JS,
    "js/charts.js" => JS,
    "js/naming.js" => JS,
    "js/pages/dashboard.js" => JS,
    "js/pages/add.js" => JS,
    "js/pages/integration.js" => JS,
    "js/pages/usage.js" => JS,
    "js/pages/notifications.js" => JS,
}

/// The content type and bytes of an asset.
pub fn get(path: &str) -> Option<(&'static str, &'static [u8])> {
    FILES
        .iter()
        .find(|(p, _, _)| *p == path)
        .map(|(_, t, b)| (*t, *b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_is_served_and_unknown_ones_are_not() {
        for (path, _, bytes) in FILES {
            assert!(get(path).is_some() && !bytes.is_empty(), "{path}");
        }
        assert!(get("../Cargo.toml").is_none());
        assert!(INDEX_HTML.contains("{{csrf_token}}") && SIGNIN_HTML.contains("{{signin_token}}"));
    }
}
