//! The line being typed: text, cursor, input history and completion, with no
//! terminal in sight, so that every edit can be tested as a plain value.

/// Where the word being completed starts, and what it may become.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Completion {
    /// Byte offset in the line where the word starts.
    pub(crate) start: usize,
    /// Every word it may be completed to, in display order.
    pub(crate) candidates: Vec<String>,
}

/// What a completion did to the line.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Completed {
    /// Nothing fits.
    Nothing,
    /// The word was completed or extended.
    Changed,
    /// Several words fit and none is longer in common: show these.
    Choices(Vec<String>),
}

/// The most lines the input history keeps.
const HISTORY: usize = 1000;

/// A line of text with a cursor, and the lines entered before it.
#[derive(Debug, Default)]
pub(crate) struct Line {
    text: String,
    /// Byte offset, always on a character boundary.
    cursor: usize,
    history: Vec<String>,
    /// The history entry shown, if the user went back, and the line they left.
    browsing: Option<(usize, String)>,
}

impl Line {
    /// The text.
    pub(crate) fn text(&self) -> &str {
        &self.text
    }

    /// The cursor's byte offset.
    pub(crate) fn cursor(&self) -> usize {
        self.cursor
    }

    /// Inserts a character at the cursor.
    pub(crate) fn insert(&mut self, c: char) {
        self.text.insert(self.cursor, c);
        self.cursor += c.len_utf8();
    }

    /// Deletes the character before the cursor.
    pub(crate) fn backspace(&mut self) {
        if let Some(c) = self.text[..self.cursor].chars().next_back() {
            self.cursor -= c.len_utf8();
            self.text.remove(self.cursor);
        }
    }

    /// Deletes the character under the cursor.
    pub(crate) fn delete(&mut self) {
        if self.cursor < self.text.len() {
            self.text.remove(self.cursor);
        }
    }

    /// Moves one character left.
    pub(crate) fn left(&mut self) {
        if let Some(c) = self.text[..self.cursor].chars().next_back() {
            self.cursor -= c.len_utf8();
        }
    }

    /// Moves one character right.
    pub(crate) fn right(&mut self) {
        if let Some(c) = self.text[self.cursor..].chars().next() {
            self.cursor += c.len_utf8();
        }
    }

    /// Moves to the start.
    pub(crate) fn home(&mut self) {
        self.cursor = 0;
    }

    /// Moves to the end.
    pub(crate) fn end(&mut self) {
        self.cursor = self.text.len();
    }

    /// Deletes from the start to the cursor.
    pub(crate) fn kill_to_start(&mut self) {
        self.text.replace_range(..self.cursor, "");
        self.cursor = 0;
    }

    /// Empties the line (what was typed is not kept in the history).
    pub(crate) fn clear(&mut self) {
        self.text.clear();
        self.cursor = 0;
        self.browsing = None;
    }

    /// Deletes from the cursor to the end.
    pub(crate) fn kill_to_end(&mut self) {
        self.text.truncate(self.cursor);
    }

    /// Deletes the word before the cursor, and the spaces after it.
    pub(crate) fn kill_word(&mut self) {
        let before = &self.text[..self.cursor];
        let trimmed = before.trim_end_matches(' ');
        let start = trimmed.rfind(' ').map_or(0, |i| i + 1);
        self.text.replace_range(start..self.cursor, "");
        self.cursor = start;
    }

    /// Takes the line as entered: it is returned, remembered in the history unless
    /// blank or a repeat of the last entry, and the line starts empty again.
    pub(crate) fn enter(&mut self) -> String {
        let line = std::mem::take(&mut self.text);
        self.cursor = 0;
        self.browsing = None;
        if !line.trim().is_empty() && self.history.last() != Some(&line) {
            if self.history.len() == HISTORY {
                self.history.remove(0);
            }
            self.history.push(line.clone());
        }
        line
    }

    /// Shows the previous history entry.
    pub(crate) fn up(&mut self) {
        let at = match &self.browsing {
            Some((0, _)) => return,
            Some((i, _)) => i - 1,
            None if self.history.is_empty() => return,
            None => {
                self.browsing = Some((self.history.len(), self.text.clone()));
                self.history.len() - 1
            }
        };
        self.show_entry(at);
    }

    /// Shows the next history entry, or the line the user was typing.
    pub(crate) fn down(&mut self) {
        let Some((i, _)) = &self.browsing else { return };
        let next = i + 1;
        if next < self.history.len() {
            self.show_entry(next);
        } else if let Some((_, typed)) = self.browsing.take() {
            self.text = typed;
            self.cursor = self.text.len();
        }
    }

    fn show_entry(&mut self, at: usize) {
        let typed = self.browsing.take().map(|(_, t)| t).unwrap_or_default();
        self.text = self.history[at].clone();
        self.cursor = self.text.len();
        self.browsing = Some((at, typed));
    }

    /// Applies a completion of the word that ends at the cursor: a single
    /// candidate replaces it (and a space follows); several extend it to what
    /// they share, or are returned to be shown when they share no more.
    pub(crate) fn complete(&mut self, c: &Completion) -> Completed {
        let start = c.start;
        if start > self.cursor || !self.text.is_char_boundary(start) {
            return Completed::Nothing;
        }
        let word = &self.text[start..self.cursor];
        let fitting: Vec<&String> = c.candidates.iter().filter(|w| w.starts_with(word)).collect();
        let (replacement, space) = match fitting.as_slice() {
            [] => return Completed::Nothing,
            [only] => (only.to_string(), true),
            [first, rest @ ..] => {
                let common = rest.iter().fold(first.as_str(), |acc, w| common_prefix(acc, w));
                if common.len() <= word.len() {
                    return Completed::Choices(fitting.into_iter().cloned().collect());
                }
                (common.to_string(), false)
            }
        };
        let mut inserted = replacement;
        if space && !self.text[self.cursor..].starts_with(' ') {
            inserted.push(' ');
        }
        self.text.replace_range(start..self.cursor, &inserted);
        self.cursor = start + inserted.len();
        Completed::Changed
    }
}

/// The longest common prefix of two strings, on a character boundary.
fn common_prefix<'a>(a: &'a str, b: &str) -> &'a str {
    let n = a
        .char_indices()
        .zip(b.chars())
        .find(|((_, x), y)| x != y)
        .map_or_else(|| a.len().min(b.len()), |((i, _), _)| i);
    // `n` is a boundary of `a`: a char index, or the shorter string's length when
    // one is a prefix of the other.
    &a[..n]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(s: &str) -> Line {
        let mut l = Line::default();
        s.chars().for_each(|c| l.insert(c));
        l
    }

    fn completion(start: usize, words: &[&str]) -> Completion {
        Completion { start, candidates: words.iter().map(|w| w.to_string()).collect() }
    }

    #[test]
    fn editing_moves_by_characters_not_bytes() {
        let mut l = typed("नमस्ते hi");
        l.left();
        l.left();
        l.left();
        l.backspace();
        assert_eq!(l.text(), "नमस्त hi");
        l.home();
        l.delete();
        assert_eq!(l.text(), "मस्त hi");
        l.end();
        l.kill_word();
        assert_eq!(l.text(), "मस्त ");
        l.insert('!');
        l.home();
        l.right();
        l.kill_to_end();
        assert_eq!(l.text(), "म");
        l.kill_to_start();
        assert_eq!((l.text(), l.cursor()), ("", 0));
        "again".chars().for_each(|c| l.insert(c));
        l.clear();
        assert_eq!((l.text(), l.cursor()), ("", 0));
        // Nothing to delete or move over: no panic, no change.
        l.backspace();
        l.delete();
        l.left();
        l.right();
        assert_eq!(l.text(), "");
    }

    #[test]
    fn history_goes_back_and_returns_to_the_line_being_typed() {
        let mut l = typed("one");
        assert_eq!(l.enter(), "one");
        "two".chars().for_each(|c| l.insert(c));
        l.enter();
        "two".chars().for_each(|c| l.insert(c));
        l.enter(); // a repeat is not remembered twice
        "   ".chars().for_each(|c| l.insert(c));
        l.enter(); // nor a blank line
        "draft".chars().for_each(|c| l.insert(c));
        l.up();
        assert_eq!(l.text(), "two");
        l.up();
        assert_eq!(l.text(), "one");
        l.up();
        assert_eq!(l.text(), "one");
        l.down();
        assert_eq!(l.text(), "two");
        l.down();
        assert_eq!((l.text(), l.cursor()), ("draft", 5));
        l.down();
        assert_eq!(l.text(), "draft");
    }

    #[test]
    fn one_candidate_completes_the_word_and_adds_a_space() {
        let mut l = typed("/mem");
        assert_eq!(l.complete(&completion(1, &["members", "msg"])), Completed::Changed);
        assert_eq!((l.text(), l.cursor()), ("/members ", 9));
    }

    #[test]
    fn several_candidates_extend_to_what_they_share_then_are_listed() {
        let mut l = typed("/members r");
        let c = completion(9, &["rust", "rustaceans", "go"]);
        assert_eq!(l.complete(&c), Completed::Changed);
        assert_eq!(l.text(), "/members rust");
        assert_eq!(
            l.complete(&c),
            Completed::Choices(vec!["rust".to_string(), "rustaceans".to_string()])
        );
        assert_eq!(l.text(), "/members rust");
    }

    #[test]
    fn completing_in_the_middle_keeps_what_follows() {
        let mut l = typed("/kick al now");
        for _ in 0..4 {
            l.left();
        }
        assert_eq!(l.complete(&completion(6, &["alice"])), Completed::Changed);
        assert_eq!(l.text(), "/kick alice now");
        assert_eq!(l.cursor(), 11);
    }

    #[test]
    fn nothing_fits_nothing_changes() {
        let mut l = typed("/zz");
        assert_eq!(l.complete(&completion(1, &["members"])), Completed::Nothing);
        assert_eq!(l.complete(&completion(99, &["members"])), Completed::Nothing);
        assert_eq!(l.text(), "/zz");
    }

    #[test]
    fn common_prefixes_end_on_character_boundaries() {
        assert_eq!(common_prefix("नमस्ते", "नमक"), "नम");
        assert_eq!(common_prefix("rust", "rustacean"), "rust");
        assert_eq!(common_prefix("abc", "xyz"), "");
    }
}
