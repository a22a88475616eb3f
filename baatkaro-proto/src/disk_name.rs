//! The name a downloaded file is saved under, made from the name it was shared
//! with (SPEC.md 11.6).
//!
//! A shared file's name comes from another user, so it is made safe before it
//! touches a disk: [`disk_name`] gives a name that is not hidden, holds nothing a
//! terminal, a shell or a common file system would treat specially, does not read
//! as a command's option, is not a device name on Windows, and fits in a file system's 255-byte limit. When that
//! name is taken, [`candidates`] lists the names to try instead (`notes (1).pdf`,
//! `notes (2).pdf`, …), each as safe.

use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

use crate::FileName;

/// The longest name, in bytes, that common file systems (ext4, XFS, Btrfs, APFS,
/// NTFS in UTF-8) store: a longer one fails to open with "name too long".
pub const MAX_LEN: usize = 255;

/// The name used when nothing of the shared name is left.
pub const FALLBACK: &str = "download";

/// The longest extension (after the last dot), in bytes, that cutting a long name
/// keeps: past that the tail of the name is more likely words than a file type.
pub const MAX_EXTENSION: usize = 16;

/// The highest number [`candidates`] tries (`notes (999).pdf`): a bound on the work
/// of finding a free name, far past what a person keeps in one folder.
pub const MAX_NUMBER: u32 = 999;

/// Characters that Windows forbids in a file name (besides the path separators).
const WINDOWS_FORBIDDEN: [char; 7] = ['<', '>', ':', '"', '|', '?', '*'];

/// Device names that Windows reserves in every directory, with or without an
/// extension, in any case (`con`, `Nul.txt`); `COM` and `LPT` take a digit or a
/// superscript one, two or three.
const RESERVED: [&str; 6] = ["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"];

/// Whether a saved name may not hold `c`: a control character (TAB included), an
/// invisible or direction-changing format character (Unicode category Cf, which
/// holds the bidi overrides, zero-width characters and tag characters, and those
/// a [`FileName`] may not hold), a line or paragraph separator, a path separator,
/// or a character Windows forbids in a name.
pub fn is_forbidden(c: char) -> bool {
    c.is_control()
        || !FileName::allows(c)
        || WINDOWS_FORBIDDEN.contains(&c)
        || matches!(
            c.general_category(),
            GeneralCategory::Format
                | GeneralCategory::LineSeparator
                | GeneralCategory::ParagraphSeparator
        )
}

/// Whether `name` is a device name Windows reserves: its part before the first
/// dot, without trailing spaces, is one of CON, PRN, AUX, NUL, CONIN$, CONOUT$,
/// COM0–COM9 or LPT0–LPT9 (or COM/LPT with a superscript 1, 2 or 3), in any case.
pub fn is_reserved(name: &str) -> bool {
    let stem = name.split('.').next().unwrap_or_default().trim_end_matches(' ');
    if RESERVED.iter().any(|r| stem.eq_ignore_ascii_case(r)) {
        return true;
    }
    let Some((prefix, last)) = stem.char_indices().nth(3).map(|(i, _)| stem.split_at(i)) else {
        return false;
    };
    let numbered = prefix.eq_ignore_ascii_case("COM") || prefix.eq_ignore_ascii_case("LPT");
    let mut digit = last.chars();
    numbered
        && matches!(digit.next(), Some('0'..='9' | '\u{B9}' | '\u{B2}' | '\u{B3}'))
        && digit.next().is_none()
}

/// The name to save a shared file under, made from the name it was shared with.
///
/// Every character [`is_forbidden`] becomes `_`; dots and white space at the start
/// (a hidden file) and at the end (which Windows drops) are removed; a leading `-`
/// becomes `_` (`rm *` in the folder would read `-rf` as options); a reserved
/// device name gets a leading `_` (`_CON.txt`); a name longer than [`MAX_LEN`]
/// bytes is cut on a character boundary, keeping its extension; and a name with
/// nothing left becomes [`FALLBACK`]. Applied to its own result it changes nothing.
pub fn disk_name(name: &str) -> String {
    let mapped: String = name.chars().map(|c| if is_forbidden(c) { '_' } else { c }).collect();
    let trimmed = trim(&mapped);
    let mut out = match trimmed.strip_prefix('-') {
        Some(rest) => fit(&format!("_{rest}")),
        None => fit(trimmed),
    };
    if out.is_empty() {
        return FALLBACK.to_owned();
    }
    if is_reserved(&out) {
        // Reserved names are short, so the prefix makes the name longer than
        // MAX_LEN only with a long extension; fitting it again cuts from the end.
        out = fit(&format!("_{out}"));
    }
    out
}

/// The names to try, in order, for a file that should be saved as `name`: `name`
/// itself, then `name` numbered from 1 to [`MAX_NUMBER`] ([`numbered`]).
pub fn candidates(name: &str) -> impl Iterator<Item = String> + '_ {
    std::iter::once(name.to_owned()).chain((1..=MAX_NUMBER).map(move |n| numbered(name, n)))
}

/// `name` with ` (n)` before its extension: `notes (1).pdf`, `notes (1)`. A name
/// that would grow past [`MAX_LEN`] bytes is cut before the number. For a name that
/// [`disk_name`] made, the result is one that [`disk_name`] keeps as it is.
pub fn numbered(name: &str, n: u32) -> String {
    let suffix = format!(" ({n})");
    // Only a short extension is kept apart, so the stem keeps its first character.
    let (stem, ext) = split_extension(name, MAX_EXTENSION);
    let room = MAX_LEN.saturating_sub(suffix.len() + ext.len());
    format!("{}{suffix}{ext}", cut(stem, room))
}

/// Removes dots and white space at the start and the end.
fn trim(name: &str) -> &str {
    name.trim_matches(|c: char| c == '.' || c.is_whitespace())
}

/// Cuts a name longer than [`MAX_LEN`] bytes to fit, keeping its extension (of at
/// most [`MAX_EXTENSION`] bytes) and never ending in a dot or white space.
fn fit(name: &str) -> String {
    if name.len() <= MAX_LEN {
        return name.to_owned();
    }
    let (stem, ext) = split_extension(name, MAX_EXTENSION);
    // The stem is cut to at least MAX_LEN - MAX_EXTENSION - 1 bytes less three for a
    // character boundary, so its first character, which is no dot, stays.
    let stem = cut(stem, MAX_LEN - ext.len());
    if ext.is_empty() { trim(stem).to_owned() } else { format!("{stem}{ext}") }
}

/// Splits `name` before its last dot when that is an extension: the dot is not the
/// first character, and the extension after it is 1 to `max_ext` bytes. Otherwise
/// the whole name is the stem.
fn split_extension(name: &str, max_ext: usize) -> (&str, &str) {
    match name.rfind('.') {
        Some(dot) if dot > 0 && (2..=max_ext + 1).contains(&(name.len() - dot)) => {
            name.split_at(dot)
        }
        _ => (name, ""),
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character
/// boundary.
fn cut(s: &str, max: usize) -> &str {
    let mut end = max.min(s.len());
    // A UTF-8 character is at most 4 bytes, so this steps back at most 3 times.
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hostile_names_are_made_safe() {
        let cases = [
            (".bashrc", "bashrc"),
            ("-rf", "_rf"),
            ("--help.txt", "_-help.txt"),
            (". -x", "_x"),
            ("../../etc/passwd", "_.._etc_passwd"),
            ("..\\..\\windows\\system32", "_.._windows_system32"),
            ("..", FALLBACK),
            (".", FALLBACK),
            ("   ", FALLBACK),
            ("", FALLBACK),
            (" . . ", FALLBACK),
            ("CON.txt", "_CON.txt"),
            ("con", "_con"),
            ("Nul.tar.gz", "_Nul.tar.gz"),
            ("com1", "_com1"),
            ("LPT9.log", "_LPT9.log"),
            ("COM\u{B9}", "_COM\u{B9}"),
            ("CON .txt", "_CON .txt"),
            ("conin$", "_conin$"),
            ("invoice\u{202E}fdp.exe", "invoice_fdp.exe"),
            ("a\u{200B}b\u{FEFF}c\u{2066}d", "a_b_c_d"),
            ("tag\u{E0041}s", "tag_s"),
            ("line\u{2028}break", "line_break"),
            ("bell\u{7}\u{1b}[31mred\tx", "bell__[31mred_x"),
            ("c1\u{85}\u{9b}", "c1__"),
            ("what?<is>:this|\"*", "what__is__this___"),
            ("notes.pdf.", "notes.pdf"),
            ("trailing   ", "trailing"),
            ("\u{3000}wide space\u{A0}", "wide space"),
        ];
        for (hostile, safe) in cases {
            assert_eq!(disk_name(hostile), safe, "{hostile:?}");
        }
    }

    #[test]
    fn ordinary_names_are_kept() {
        for name in ["notes.pdf", "Résumé 2026.docx", "漢字.txt", "a b", "x", "README", "v1.2.3"]
        {
            assert_eq!(disk_name(name), name);
        }
        // Not reserved: longer or shorter than a device name, or the name is elsewhere.
        for name in ["CONSOLE", "com10", "LPT", "auxiliary.txt", "my.con", "com1x"] {
            assert!(!is_reserved(name), "{name}");
            assert_eq!(disk_name(name), name);
        }
    }

    #[test]
    fn long_names_are_cut_on_a_character_boundary_keeping_the_extension() {
        let long = format!("{}.pdf", "a".repeat(1000));
        let cut = disk_name(&long);
        assert_eq!(cut.len(), MAX_LEN);
        assert!(cut.ends_with("aaa.pdf"), "{cut}");
        // 1000 bytes of three-byte characters: cut to a whole character.
        let wide = "漢".repeat(334);
        let cut = disk_name(&wide);
        assert_eq!(cut, "漢".repeat(85));
        assert_eq!(cut.len(), 255);
        let wide_ext = format!("{}.txt", "é".repeat(500));
        let cut = disk_name(&wide_ext);
        assert!(cut.len() <= MAX_LEN && cut.ends_with("é.txt"), "{cut}");
        // A long "extension" is not kept: it is the end of the name that is cut.
        let words = format!("a.{}", "b".repeat(300));
        assert_eq!(disk_name(&words), format!("a.{}", "b".repeat(253)));
        // A cut that ends in spaces or dots drops them.
        let spaced = format!("{}{} {}", "x".repeat(250), " .".repeat(100), "y".repeat(20));
        assert_eq!(disk_name(&spaced), "x".repeat(250));
        // A cut that leaves a device name still gets its prefix.
        let device = format!("CON{}x", " ".repeat(260));
        assert_eq!(disk_name(&device), "_CON");
    }

    #[test]
    fn numbered_names_go_before_the_extension() {
        assert_eq!(numbered("notes.pdf", 1), "notes (1).pdf");
        assert_eq!(numbered("x", 2), "x (2)");
        assert_eq!(numbered("archive.tar.gz", 3), "archive.tar (3).gz");
        // A long tail after the last dot is no extension: the number goes at the end.
        let tail = format!("a.{}", "b".repeat(253));
        assert_eq!(numbered(&tail, 1), format!("a.{} (1)", "b".repeat(249)));
        let got: Vec<String> = candidates("a.b").take(3).collect();
        assert_eq!(got, ["a.b", "a (1).b", "a (2).b"]);
        assert_eq!(candidates("a").count(), MAX_NUMBER as usize + 1);
        let long = disk_name(&format!("{}.pdf", "a".repeat(300)));
        let n = numbered(&long, 999);
        assert_eq!(n.len(), MAX_LEN);
        assert!(n.ends_with("a (999).pdf"), "{n}");
    }

    /// Strings made of what hostile names are made of: dots, spaces, separators,
    /// controls, format characters, device names, long runs and wide characters.
    fn hostile() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just(".".to_owned()),
            Just("-".to_owned()),
            Just(" ".to_owned()),
            Just("/".to_owned()),
            Just("\\".to_owned()),
            Just("CON".to_owned()),
            Just("com1".to_owned()),
            Just("\u{202E}".to_owned()),
            Just("\u{3000}".to_owned()),
            Just("漢".to_owned()),
            "[a-z]{1,8}",
            any::<char>().prop_map(String::from),
            "[a-z]{100,300}",
        ];
        prop::collection::vec(piece, 0..12).prop_map(|v| v.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn a_disk_name_is_safe_and_stable(s in prop_oneof![hostile(), any::<String>()]) {
            let d = disk_name(&s);
            prop_assert!(!d.is_empty());
            prop_assert!(d.len() <= MAX_LEN, "{} bytes", d.len());
            prop_assert!(!d.starts_with(['.', '-']) && !d.starts_with(char::is_whitespace), "{d:?}");
            prop_assert!(!d.ends_with('.') && !d.ends_with(char::is_whitespace), "{d:?}");
            prop_assert!(!d.chars().any(is_forbidden), "{d:?}");
            prop_assert!(!is_reserved(&d), "{d:?}");
            prop_assert_eq!(disk_name(&d), d.clone(), "not idempotent");
            // It is also a name a client may offer, and a name the protocol carries.
            prop_assert!(crate::OfferName::new(&d).is_ok(), "{d:?}");
        }

        #[test]
        fn a_numbered_disk_name_is_as_safe(s in hostile(), n in 1..=MAX_NUMBER) {
            let d = disk_name(&s);
            let numbered = numbered(&d, n);
            prop_assert!(numbered.len() <= MAX_LEN);
            prop_assert_ne!(&numbered, &d);
            prop_assert_eq!(disk_name(&numbered), numbered);
        }
    }
}
