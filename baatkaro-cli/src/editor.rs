//! The prompt on a terminal: line editing, input history and tab completion, with
//! lines printed above the prompt without disturbing what is being typed.
//!
//! The terminal is in raw mode while an [`Editor`] lives. The line and the prompt
//! are shared with every [`Above`] handle, so that a line printed from anywhere
//! clears the prompt, prints, and draws the prompt again with the typed text and
//! the cursor where they were. [`Editor::read_line`] is cancel-safe: everything it
//! knows lives in the editor, so it can sit in a `select!` beside other work.

use std::io::{self, Stdout, Write};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crossterm::event::{Event, EventStream, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use crossterm::{cursor, queue, style, terminal};
use futures::StreamExt;
use unicode_width::UnicodeWidthChar;

use crate::line::{Completed, Completion, Line};

/// What the user did with the prompt.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Input {
    /// Entered a line.
    Line(String),
    /// Ended the input (Ctrl-D on an empty line).
    Eof,
    /// Interrupted: Ctrl-C twice on an empty line, or twice within a second.
    Interrupted,
}

/// Completes the word that ends at a byte offset of a line.
pub(crate) type Completer = Box<dyn Fn(&str, usize) -> Completion + Send>;

/// The prompt and the line, as the terminal shows them.
struct Screen {
    prompt: String,
    line: Line,
    width: u16,
    out: Stdout,
}

impl Screen {
    /// Draws the prompt line again: the prompt, as much of the line as fits around
    /// the cursor, and the cursor.
    fn draw(&mut self) -> io::Result<()> {
        let prompt_width = text_width(&self.prompt);
        let room = usize::from(self.width).saturating_sub(prompt_width + 1).max(8);
        let text = self.line.text();
        let cursor = self.line.cursor();
        // Scroll sideways, a whole screen at a time, so the cursor stays in view.
        let (mut start, mut col) = (0, text_width(&text[..cursor]));
        while col >= room {
            let (skip, w) = prefix_of_width(&text[start..], room / 2);
            if skip == 0 {
                break; // A character wider than half the room: show it as it is.
            }
            start += skip;
            col -= w;
        }
        let (shown, _) = prefix_of_width(&text[start..], room);
        queue!(
            self.out,
            cursor::MoveToColumn(0),
            terminal::Clear(terminal::ClearType::CurrentLine),
            style::Print(&self.prompt),
            style::Print(&text[start..start + shown]),
            // Columns are u16 on every terminal; a width past that cannot be.
            cursor::MoveToColumn(u16::try_from(prompt_width + col).unwrap_or(u16::MAX)),
        )?;
        self.out.flush()
    }

    /// Prints `text` on lines of its own above the prompt, then draws the prompt.
    fn above(&mut self, text: &str) -> io::Result<()> {
        queue!(
            self.out,
            cursor::MoveToColumn(0),
            terminal::Clear(terminal::ClearType::CurrentLine)
        )?;
        for line in text.lines() {
            // Raw mode: a newline does not return the carriage by itself.
            queue!(self.out, style::Print(line), style::Print("\r\n"))?;
        }
        self.draw()
    }
}

/// How many bytes of `s` fill at most `width` columns, and how many columns.
fn prefix_of_width(s: &str, width: usize) -> (usize, usize) {
    let mut used = 0;
    for (i, c) in s.char_indices() {
        let w = c.width().unwrap_or(0);
        if used + w > width {
            return (i, used);
        }
        used += w;
    }
    (s.len(), used)
}

/// The columns `s` takes.
fn text_width(s: &str) -> usize {
    s.chars().map(|c| c.width().unwrap_or(0)).sum()
}

fn lock(screen: &Mutex<Screen>) -> MutexGuard<'_, Screen> {
    // A panic while drawing leaves nothing inconsistent worth refusing over.
    screen.lock().unwrap_or_else(|p| p.into_inner())
}

/// Prints lines above the prompt. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Above(Arc<Mutex<Screen>>);

impl Above {
    /// Prints `text` above the prompt. A terminal that is gone is not an error
    /// worth reporting here: the input side sees the end of it.
    pub(crate) fn line(&self, text: &str) {
        let _ = lock(&self.0).above(text);
    }
}

/// How close together two Ctrl-C must come to quit whatever the line holds.
const QUIT_WITHIN: Duration = Duration::from_secs(1);

/// The prompt, reading keys from the terminal.
pub(crate) struct Editor {
    screen: Arc<Mutex<Screen>>,
    keys: EventStream,
    complete: Completer,
    /// When Ctrl-C was last pressed.
    interrupted_at: Option<Instant>,
    /// The last key was Ctrl-C on an empty line: one more quits.
    armed: bool,
}

impl Editor {
    /// Puts the terminal in raw mode and shows `prompt`.
    pub(crate) fn new(prompt: &str, complete: Completer) -> io::Result<(Editor, Above)> {
        terminal::enable_raw_mode()?;
        // A panic must not leave the terminal raw: give it back before the message.
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let _ = terminal::disable_raw_mode();
            previous(info);
        }));
        let width = terminal::size().map_or(80, |(w, _)| w);
        let screen =
            Screen { prompt: prompt.to_string(), line: Line::default(), width, out: io::stdout() };
        let screen = Arc::new(Mutex::new(screen));
        lock(&screen).draw()?;
        let editor = Editor {
            screen: screen.clone(),
            keys: EventStream::new(),
            complete,
            interrupted_at: None,
            armed: false,
        };
        Ok((editor, Above(screen)))
    }

    /// Changes the prompt (it shows the current group and unread counts).
    pub(crate) fn set_prompt(&self, prompt: &str) {
        let mut s = lock(&self.screen);
        if s.prompt != prompt {
            s.prompt = prompt.to_string();
            let _ = s.draw();
        }
    }

    /// Waits for the user to enter a line, editing it meanwhile.
    pub(crate) async fn read_line(&mut self) -> Input {
        loop {
            let key = match self.keys.next().await {
                Some(Ok(Event::Key(key))) if key.kind != KeyEventKind::Release => key,
                Some(Ok(Event::Resize(width, _))) => {
                    let mut s = lock(&self.screen);
                    s.width = width;
                    let _ = s.draw();
                    continue;
                }
                Some(Ok(_)) => continue,
                // The terminal is gone.
                Some(Err(_)) | None => return Input::Eof,
            };
            if let Some(done) = self.key(key) {
                return done;
            }
        }
    }

    /// Ctrl-C: clears the line; quits when pressed again on the empty line, or
    /// within a second whatever the line holds.
    fn interrupt(&mut self, s: &mut Screen) -> Option<Input> {
        let now = Instant::now();
        let recent = self.interrupted_at.is_some_and(|t| now.duration_since(t) < QUIT_WITHIN);
        if recent || self.armed {
            return Some(Input::Interrupted);
        }
        self.interrupted_at = Some(now);
        if s.line.text().is_empty() {
            self.armed = true;
            let _ = s.above(&format!("{} (Ctrl-C again quits)", crate::show::now()));
        } else {
            s.line.clear();
        }
        None
    }

    /// Applies one key; what the user did, if that was the end of a line.
    fn key(&mut self, key: KeyEvent) -> Option<Input> {
        let screen = self.screen.clone();
        let mut s = lock(&screen);
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        if !(ctrl && key.code == KeyCode::Char('c')) {
            self.armed = false;
        }
        match key.code {
            KeyCode::Enter => {
                let prompt = s.prompt.clone();
                let line = s.line.enter();
                // A command stays on the screen, as typed, above what it prints; a
                // message is shown once, when the server has it.
                if line.starts_with('/') {
                    let _ = s.above(&format!("{prompt}{line}"));
                } else {
                    let _ = s.draw();
                }
                return Some(Input::Line(line));
            }
            KeyCode::Char('c') if ctrl => {
                if let Some(done) = self.interrupt(&mut s) {
                    return Some(done);
                }
            }
            KeyCode::Char('d') if ctrl && s.line.text().is_empty() => return Some(Input::Eof),
            KeyCode::Char('d') if ctrl => s.line.delete(),
            KeyCode::Char('a') if ctrl => s.line.home(),
            KeyCode::Char('e') if ctrl => s.line.end(),
            KeyCode::Char('b') if ctrl => s.line.left(),
            KeyCode::Char('f') if ctrl => s.line.right(),
            KeyCode::Char('u') if ctrl => s.line.kill_to_start(),
            KeyCode::Char('k') if ctrl => s.line.kill_to_end(),
            KeyCode::Char('w') if ctrl => s.line.kill_word(),
            KeyCode::Char('p') if ctrl => s.line.up(),
            KeyCode::Char('n') if ctrl => s.line.down(),
            KeyCode::Char(_) if ctrl || key.modifiers.contains(KeyModifiers::ALT) => {}
            // Control characters never enter the line: they could not be sent.
            KeyCode::Char(c) if !c.is_control() => s.line.insert(c),
            KeyCode::Backspace => s.line.backspace(),
            KeyCode::Delete => s.line.delete(),
            KeyCode::Left => s.line.left(),
            KeyCode::Right => s.line.right(),
            KeyCode::Home => s.line.home(),
            KeyCode::End => s.line.end(),
            KeyCode::Up => s.line.up(),
            KeyCode::Down => s.line.down(),
            KeyCode::Tab => {
                let completion = (self.complete)(s.line.text(), s.line.cursor());
                if let Completed::Choices(words) = s.line.complete(&completion) {
                    let _ = s.above(&words.join("  "));
                }
            }
            _ => {}
        }
        let _ = s.draw();
        None
    }
}

impl Drop for Editor {
    fn drop(&mut self) {
        // Leave the cursor on a fresh line and the terminal as it was found.
        let mut s = lock(&self.screen);
        let _ = queue!(s.out, style::Print("\r\n"));
        let _ = s.out.flush();
        let _ = terminal::disable_raw_mode();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths_count_columns_not_bytes() {
        assert_eq!(text_width("abc"), 3);
        assert_eq!(text_width("日本"), 4);
        assert_eq!(prefix_of_width("日本語", 5), ("日本".len(), 4));
        assert_eq!(prefix_of_width("abc", 10), (3, 3));
        assert_eq!(prefix_of_width("", 3), (0, 0));
    }
}
