//! TUI configuration: key bindings and colours, from `$XDG_CONFIG_HOME/podwire/config.toml`.
//!
//! Parsing is pure ([`Config::from_toml`]); reading the file happens in the shell
//! (`tui::run`). Unknown actions, keys or colours are reported as errors naming the entry, so
//! a typo never silently changes behaviour. The default palette is colour-blind safe (blue
//! versus orange/vermillion, never red versus green) and every state is also shown by a
//! symbol; with `NO_COLOR` set, [`Palette::monochrome`] uses only bold, underline and reverse.

use std::collections::BTreeMap;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::style::{Color, Modifier, Style};
use serde::Deserialize;

/// What a key does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    Quit,
    Help,
    Command,
    Filter,
    Down,
    Up,
    Top,
    Bottom,
    PageDown,
    PageUp,
    Open,
    Back,
    Sort,
    SortReverse,
    Pause,
    Names,
    Wide,
    NextView,
    PrevView,
    Faster,
    Slower,
    Group,
    Export,
}

impl Action {
    pub const ALL: [Action; 23] = [
        Action::Quit,
        Action::Help,
        Action::Command,
        Action::Filter,
        Action::Down,
        Action::Up,
        Action::Top,
        Action::Bottom,
        Action::PageDown,
        Action::PageUp,
        Action::Open,
        Action::Back,
        Action::Sort,
        Action::SortReverse,
        Action::Pause,
        Action::Names,
        Action::Wide,
        Action::NextView,
        Action::PrevView,
        Action::Faster,
        Action::Slower,
        Action::Group,
        Action::Export,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Action::Quit => "quit",
            Action::Help => "help",
            Action::Command => "command",
            Action::Filter => "filter",
            Action::Down => "down",
            Action::Up => "up",
            Action::Top => "top",
            Action::Bottom => "bottom",
            Action::PageDown => "page_down",
            Action::PageUp => "page_up",
            Action::Open => "open",
            Action::Back => "back",
            Action::Sort => "sort",
            Action::SortReverse => "sort_reverse",
            Action::Pause => "pause",
            Action::Names => "names",
            Action::Wide => "wide",
            Action::NextView => "next_view",
            Action::PrevView => "prev_view",
            Action::Faster => "faster",
            Action::Slower => "slower",
            Action::Group => "group",
            Action::Export => "export",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Action::Quit => "quit (asks first during a live capture)",
            Action::Help => "help for this view",
            Action::Command => "command mode (:flows :ns NAME :save DIR :export :q)",
            Action::Filter => "filter (Enter applies, Esc clears)",
            Action::Down => "move down",
            Action::Up => "move up",
            Action::Top => "first row",
            Action::Bottom => "last row",
            Action::PageDown => "page down",
            Action::PageUp => "page up",
            Action::Open => "open details",
            Action::Back => "close / back",
            Action::Sort => "next sort column",
            Action::SortReverse => "reverse sort direction",
            Action::Pause => "pause replay / freeze live view",
            Action::Names => "names vs IP addresses",
            Action::Wide => "wide: more columns",
            Action::NextView => "next view",
            Action::PrevView => "previous view",
            Action::Faster => "replay faster (1× → 10× → max)",
            Action::Slower => "replay slower",
            Action::Group => "services: group by workload / namespace",
            Action::Export => "export the selected flow's packets to pcapng (from the ring)",
        }
    }

    fn default_keys(self) -> &'static [&'static str] {
        match self {
            Action::Quit => &["q", "ctrl-c"],
            Action::Help => &["?"],
            Action::Command => &[":"],
            Action::Filter => &["/"],
            Action::Down => &["j", "down"],
            Action::Up => &["k", "up"],
            Action::Top => &["g", "home"],
            Action::Bottom => &["G", "end"],
            Action::PageDown => &["pgdn", "ctrl-f"],
            Action::PageUp => &["pgup", "ctrl-b"],
            Action::Open => &["enter"],
            Action::Back => &["esc"],
            Action::Sort => &["s"],
            Action::SortReverse => &["S"],
            Action::Pause => &["space"],
            Action::Names => &["d"],
            Action::Wide => &["w"],
            Action::NextView => &["tab"],
            Action::PrevView => &["backtab"],
            Action::Faster => &["+", ">"],
            Action::Slower => &["-", "<"],
            Action::Group => &["n"],
            Action::Export => &["e"],
        }
    }
}

/// A key as bound: code plus whether Ctrl/Alt are held (Shift is in the character).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeySpec {
    pub code: KeyName,
    pub ctrl: bool,
    pub alt: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyName {
    Char(char),
    Enter,
    Esc,
    Tab,
    BackTab,
    Up,
    Down,
    Left,
    Right,
    PageUp,
    PageDown,
    Home,
    End,
    Backspace,
    F(u8),
}

impl KeySpec {
    /// Parses `q`, `G`, `ctrl-c`, `alt-x`, `enter`, `esc`, `tab`, `backtab`, `space`,
    /// `up`/`down`/`left`/`right`, `pgup`/`pgdn`, `home`/`end`, `backspace`, `f1`…`f12`.
    pub fn parse(text: &str) -> Option<KeySpec> {
        let mut ctrl = false;
        let mut alt = false;
        let mut rest = text;
        loop {
            let lower = rest.to_ascii_lowercase();
            if rest.chars().count() > 1 && lower.starts_with("ctrl-") {
                ctrl = true;
                rest = &rest[5..];
            } else if rest.chars().count() > 1 && lower.starts_with("alt-") {
                alt = true;
                rest = &rest[4..];
            } else {
                break;
            }
        }
        let mut chars = rest.chars();
        let code = match (chars.next(), chars.next()) {
            (Some(c), None) => KeyName::Char(if ctrl { c.to_ascii_lowercase() } else { c }),
            _ => match rest.to_ascii_lowercase().as_str() {
                "enter" | "return" => KeyName::Enter,
                "esc" | "escape" => KeyName::Esc,
                "tab" => KeyName::Tab,
                "backtab" | "shift-tab" => KeyName::BackTab,
                "space" => KeyName::Char(' '),
                "up" => KeyName::Up,
                "down" => KeyName::Down,
                "left" => KeyName::Left,
                "right" => KeyName::Right,
                "pgup" | "pageup" => KeyName::PageUp,
                "pgdn" | "pagedown" => KeyName::PageDown,
                "home" => KeyName::Home,
                "end" => KeyName::End,
                "backspace" => KeyName::Backspace,
                f if f.starts_with('f') => {
                    KeyName::F(f[1..].parse().ok().filter(|n| (1..=12).contains(n))?)
                }
                _ => return None,
            },
        };
        Some(KeySpec { code, ctrl, alt })
    }

    pub fn from_event(event: &KeyEvent) -> Option<KeySpec> {
        let ctrl = event.modifiers.contains(KeyModifiers::CONTROL);
        let alt = event.modifiers.contains(KeyModifiers::ALT);
        let code = match event.code {
            KeyCode::Char(c) => KeyName::Char(if ctrl { c.to_ascii_lowercase() } else { c }),
            KeyCode::Enter => KeyName::Enter,
            KeyCode::Esc => KeyName::Esc,
            KeyCode::Tab if event.modifiers.contains(KeyModifiers::SHIFT) => KeyName::BackTab,
            KeyCode::Tab => KeyName::Tab,
            KeyCode::BackTab => KeyName::BackTab,
            KeyCode::Up => KeyName::Up,
            KeyCode::Down => KeyName::Down,
            KeyCode::Left => KeyName::Left,
            KeyCode::Right => KeyName::Right,
            KeyCode::PageUp => KeyName::PageUp,
            KeyCode::PageDown => KeyName::PageDown,
            KeyCode::Home => KeyName::Home,
            KeyCode::End => KeyName::End,
            KeyCode::Backspace => KeyName::Backspace,
            KeyCode::F(n) => KeyName::F(n),
            _ => return None,
        };
        Some(KeySpec { code, ctrl, alt })
    }

    pub fn label(&self) -> String {
        let mut out = String::new();
        if self.ctrl {
            out.push_str("ctrl-");
        }
        if self.alt {
            out.push_str("alt-");
        }
        match self.code {
            KeyName::Char(' ') => out.push_str("space"),
            KeyName::Char(c) => out.push(c),
            KeyName::Enter => out.push_str("enter"),
            KeyName::Esc => out.push_str("esc"),
            KeyName::Tab => out.push_str("tab"),
            KeyName::BackTab => out.push_str("shift-tab"),
            KeyName::Up => out.push('↑'),
            KeyName::Down => out.push('↓'),
            KeyName::Left => out.push('←'),
            KeyName::Right => out.push('→'),
            KeyName::PageUp => out.push_str("pgup"),
            KeyName::PageDown => out.push_str("pgdn"),
            KeyName::Home => out.push_str("home"),
            KeyName::End => out.push_str("end"),
            KeyName::Backspace => out.push_str("backspace"),
            KeyName::F(n) => out.push_str(&format!("f{n}")),
        }
        out
    }
}

/// Key bindings.
#[derive(Debug, Clone)]
pub struct KeyMap {
    bindings: BTreeMap<KeySpec, Action>,
}

impl Default for KeyMap {
    fn default() -> Self {
        let mut bindings = BTreeMap::new();
        for action in Action::ALL {
            for key in action.default_keys() {
                if let Some(spec) = KeySpec::parse(key) {
                    bindings.insert(spec, action);
                }
            }
        }
        KeyMap { bindings }
    }
}

impl KeyMap {
    pub fn action(&self, event: &KeyEvent) -> Option<Action> {
        let spec = KeySpec::from_event(event)?;
        self.bindings.get(&spec).copied()
    }

    /// The keys bound to an action, for help.
    pub fn keys_for(&self, action: Action) -> Vec<String> {
        self.bindings
            .iter()
            .filter(|(_, a)| **a == action)
            .map(|(k, _)| k.label())
            .collect()
    }

    /// Rebinds `action` to exactly `keys` (removing its default keys).
    fn rebind(&mut self, action: Action, keys: &[KeySpec]) {
        self.bindings.retain(|_, a| *a != action);
        for k in keys {
            self.bindings.insert(*k, action);
        }
    }
}

/// Colour roles.
#[derive(Debug, Clone, PartialEq)]
pub struct Palette {
    pub accent: Style,
    pub header: Style,
    pub selected: Style,
    pub plaintext: Style,
    pub encrypted: Style,
    pub denied: Style,
    pub allowed: Style,
    pub warn: Style,
    pub dim: Style,
    pub valid: Style,
    pub invalid: Style,
    pub high: Style,
    pub medium: Style,
    pub low: Style,
}

// Okabe–Ito colours (distinguishable with every common colour-vision deficiency).
const BLUE: Color = Color::Indexed(32); // ≈ #0072B2
const SKY: Color = Color::Indexed(74); // ≈ #56B4E9
const ORANGE: Color = Color::Indexed(214); // ≈ #E69F00
const VERMILLION: Color = Color::Indexed(166); // ≈ #D55E00
const PURPLE: Color = Color::Indexed(175); // ≈ #CC79A7

impl Default for Palette {
    fn default() -> Self {
        let bold = Modifier::BOLD;
        Palette {
            accent: Style::new().fg(SKY).add_modifier(bold),
            header: Style::new().add_modifier(bold | Modifier::UNDERLINED),
            selected: Style::new().add_modifier(Modifier::REVERSED),
            plaintext: Style::new().fg(ORANGE).add_modifier(bold),
            encrypted: Style::new().fg(BLUE),
            denied: Style::new().fg(VERMILLION).add_modifier(bold),
            allowed: Style::new().fg(SKY),
            warn: Style::new().fg(ORANGE).add_modifier(bold),
            dim: Style::new().add_modifier(Modifier::DIM),
            valid: Style::new().fg(SKY),
            invalid: Style::new().fg(VERMILLION).add_modifier(bold),
            high: Style::new().fg(VERMILLION).add_modifier(bold),
            medium: Style::new().fg(ORANGE),
            low: Style::new().fg(PURPLE),
        }
    }
}

impl Palette {
    /// No colours at all: bold, underline, reverse and symbols carry the meaning.
    pub fn monochrome() -> Palette {
        let bold = Style::new().add_modifier(Modifier::BOLD);
        Palette {
            accent: bold,
            header: Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED),
            selected: Style::new().add_modifier(Modifier::REVERSED),
            plaintext: bold,
            encrypted: Style::new(),
            denied: bold,
            allowed: Style::new(),
            warn: bold,
            dim: Style::new(),
            valid: Style::new(),
            invalid: bold,
            high: bold,
            medium: Style::new(),
            low: Style::new(),
        }
    }

    fn role_mut(&mut self, role: &str) -> Option<&mut Style> {
        Some(match role {
            "accent" => &mut self.accent,
            "header" => &mut self.header,
            "selected" => &mut self.selected,
            "plaintext" => &mut self.plaintext,
            "encrypted" => &mut self.encrypted,
            "denied" => &mut self.denied,
            "allowed" => &mut self.allowed,
            "warn" => &mut self.warn,
            "dim" => &mut self.dim,
            "valid" => &mut self.valid,
            "invalid" => &mut self.invalid,
            "high" => &mut self.high,
            "medium" => &mut self.medium,
            "low" => &mut self.low,
            _ => return None,
        })
    }
}

/// Parses a colour: a name (`blue`, `lightyellow`…), `#rrggbb` or a 0–255 index.
pub fn parse_color(text: &str) -> Option<Color> {
    text.trim().parse::<Color>().ok()
}

/// The whole configuration.
#[derive(Debug, Clone, Default)]
pub struct Config {
    pub keys: KeyMap,
    pub palette: Palette,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    keys: BTreeMap<String, KeyList>,
    #[serde(default)]
    colors: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum KeyList {
    One(String),
    Many(Vec<String>),
}

impl Config {
    /// Parses a config file's text. `monochrome` (NO_COLOR) ignores every colour.
    pub fn from_toml(text: &str, monochrome: bool) -> Result<Config, String> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut config = Config {
            keys: KeyMap::default(),
            palette: if monochrome {
                Palette::monochrome()
            } else {
                Palette::default()
            },
        };
        for (name, keys) in raw.keys {
            let action = Action::ALL
                .into_iter()
                .find(|a| a.name() == name)
                .ok_or_else(|| format!("[keys] unknown action `{name}`"))?;
            let list = match keys {
                KeyList::One(k) => vec![k],
                KeyList::Many(v) => v,
            };
            let specs = list
                .iter()
                .map(|k| {
                    KeySpec::parse(k).ok_or_else(|| format!("[keys] {name}: unknown key `{k}`"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            config.keys.rebind(action, &specs);
        }
        if !monochrome {
            for (role, value) in raw.colors {
                let color = parse_color(&value)
                    .ok_or_else(|| format!("[colors] {role}: unknown colour `{value}`"))?;
                let style = config
                    .palette
                    .role_mut(&role)
                    .ok_or_else(|| format!("[colors] unknown role `{role}`"))?;
                *style = style.fg(color);
            }
        }
        Ok(config)
    }

    pub fn defaults(monochrome: bool) -> Config {
        Config {
            keys: KeyMap::default(),
            palette: if monochrome {
                Palette::monochrome()
            } else {
                Palette::default()
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_keys_and_colours() {
        let c = Config::from_toml(
            "[keys]\nquit = [\"x\", \"ctrl-q\"]\ndown = \"n\"\n[colors]\nplaintext = \"#ff8800\"\n",
            false,
        )
        .unwrap();
        let ev = |code, m| KeyEvent::new(code, m);
        assert_eq!(
            c.keys.action(&ev(KeyCode::Char('x'), KeyModifiers::NONE)),
            Some(Action::Quit)
        );
        assert_eq!(
            c.keys
                .action(&ev(KeyCode::Char('q'), KeyModifiers::CONTROL)),
            Some(Action::Quit)
        );
        assert_eq!(
            c.keys.action(&ev(KeyCode::Char('q'), KeyModifiers::NONE)),
            None
        );
        assert_eq!(
            c.keys.action(&ev(KeyCode::Char('n'), KeyModifiers::NONE)),
            Some(Action::Down)
        );
        assert_eq!(c.palette.plaintext.fg, Some(Color::Rgb(0xff, 0x88, 0)));
    }

    #[test]
    fn rejects_typos() {
        assert!(Config::from_toml("[keys]\nqiut = \"q\"\n", false).is_err());
        assert!(Config::from_toml("[keys]\nquit = \"hyper-q\"\n", false).is_err());
        assert!(Config::from_toml("[colors]\nplaintext = \"no-such\"\n", false).is_err());
        assert!(Config::from_toml("[colours]\n", false).is_err());
    }

    #[test]
    fn monochrome_has_no_colours() {
        let p = Config::from_toml("[colors]\nplaintext = \"red\"\n", true)
            .unwrap()
            .palette;
        for s in [
            p.accent,
            p.plaintext,
            p.encrypted,
            p.denied,
            p.allowed,
            p.high,
        ] {
            assert_eq!(s.fg, None);
            assert_eq!(s.bg, None);
        }
    }

    #[test]
    fn uppercase_letters_are_distinct() {
        let k = KeyMap::default();
        let ev = KeyEvent::new(KeyCode::Char('G'), KeyModifiers::SHIFT);
        assert_eq!(k.action(&ev), Some(Action::Bottom));
        let ev = KeyEvent::new(KeyCode::Char('S'), KeyModifiers::SHIFT);
        assert_eq!(k.action(&ev), Some(Action::SortReverse));
    }
}
