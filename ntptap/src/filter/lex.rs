//! An expression's text to tokens: words (names, numbers, addresses, port ranges) and
//! operators. Inside brackets `:` and `/` are operators (`ip[6:2]`); outside they belong to
//! addresses (`fe80::1`, `10.0.0.0/8`, `00:11:22:33:44:55`).

use anyhow::bail;

/// One token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Token {
    /// A name, number or address.
    Word(String),
    /// An operator or bracket.
    Punct(&'static str),
}

impl Token {
    /// As the user wrote it, escaped for a terminal.
    #[must_use]
    pub fn text(&self) -> String {
        match self {
            Token::Word(w) => crate::escape::terminal(w).into_owned(),
            Token::Punct(p) => (*p).to_owned(),
        }
    }
}

const PUNCTS: [&str; 21] = [
    "&&", "||", "==", "!=", "<=", ">=", "<<", ">>", "(", ")", "[", "]", ":", "!", "=", "<", ">",
    "+", "*", "%", "^",
];

/// The tokens of `text`.
pub fn lex(text: &str) -> anyhow::Result<Vec<Token>> {
    let mut tokens = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let (mut i, mut depth) = (0, 0u32);
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        // A word: names, numbers, addresses (10.0.0.0/8, fe80::1, 00:11:22:33:44:55),
        // port ranges (1-1024), names with hyphens (tcp-syn). Inside brackets ':' and '/'
        // are operators (ip[6:2], len/4).
        let word_char = |c: char, first: bool| {
            c.is_ascii_alphanumeric()
                || c == '_'
                || c == '.'
                || c == '\\'
                || (!first && c == '-')
                || (depth == 0 && (c == ':' || (c == '/' && !first)))
        };
        if word_char(c, true) {
            let start = i;
            while i < chars.len() && word_char(chars[i], i == start) {
                i += 1;
            }
            // A lone ':' outside brackets is not a word ("::" starts an IPv6 address).
            let word: String = chars[start..i].iter().collect();
            tokens.push(Token::Word(word));
            continue;
        }
        if c == '-' {
            tokens.push(Token::Punct("-"));
            i += 1;
            continue;
        }
        if c == '/' {
            tokens.push(Token::Punct("/"));
            i += 1;
            continue;
        }
        if c == '&' && chars.get(i + 1) != Some(&'&') {
            tokens.push(Token::Punct("&"));
            i += 1;
            continue;
        }
        if c == '|' && chars.get(i + 1) != Some(&'|') {
            tokens.push(Token::Punct("|"));
            i += 1;
            continue;
        }
        let rest: String = chars[i..chars.len().min(i + 2)].iter().collect();
        let Some(p) = PUNCTS.iter().find(|p| rest.starts_with(**p)) else {
            bail!("unexpected character {c:?} in the expression");
        };
        match *p {
            "[" => depth += 1,
            "]" => depth = depth.saturating_sub(1),
            _ => {}
        }
        tokens.push(Token::Punct(p));
        i += p.len();
    }
    Ok(tokens)
}
