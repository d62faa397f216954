//! Diagrams of a compiled [`Program`]: Graphviz DOT ([`to_dot`]) and Mermaid ([`to_mermaid`]).
//!
//! Both formats are drawn from one [`Diagram`]: a `start` node, one node per action (its array
//! index, its type and a short summary of its key option), an `end of flow` node, and one
//! labelled edge for every place control may go after an action:
//!
//! | action | edges |
//! | --- | --- |
//! | `branch` | one per target (`"1"`, or `"1", "2"` when keys share a target), and `default` |
//! | `goto` with `loop_count` N > 0 | `loop ×N` to the target, `after N` to the next action |
//! | `condition_variable` | `true` (the next action) and `false` |
//! | `hangup`, `stop` | none: they are drawn as terminals |
//! | anything else | `next` |
//!
//! Actions that cannot be reached from the first one are drawn grey and dashed, and so are their
//! outgoing edges (and the end node, when no path reaches it).

use std::fmt::Write as _;
use std::time::Duration;

use crate::action::{
    ActionType, Branch, Comparison, ConditionVariable, DigitsReceive, Operand, RecordingStart,
    Step, Subject,
};
use crate::program::{Action, Program};

/// Longest summary line, in characters, before it is cut with `…`.
const SUMMARY_CHARS: usize = 48;
/// Longest `talk` text, in characters, inside the summary.
const TALK_CHARS: usize = 40;
/// Longest branch key shown on an edge.
const KEY_CHARS: usize = 16;
/// Longest diagram title.
const TITLE_CHARS: usize = 80;

/// Render `program` as a Graphviz DOT `digraph` titled `title` (e.g. the flow's name).
///
/// Feed it to `dot -Tsvg` to get a picture. Every piece of flow text is escaped, so quotes,
/// backslashes and newlines in options cannot break the document.
pub fn to_dot(program: &Program, title: &str) -> String {
    Diagram::new(program).dot(title)
}

/// Render `program` as a Mermaid `flowchart TD` (for Markdown viewers that draw Mermaid blocks).
///
/// Every piece of flow text is written with Mermaid entity codes (`#34;` for `"`), so it cannot
/// break the document.
pub fn to_mermaid(program: &Program) -> String {
    Diagram::new(program).mermaid()
}

/// A node of the diagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NodeRef {
    Start,
    Action(usize),
    End,
}

impl NodeRef {
    fn id(self) -> String {
        match self {
            Self::Start => "flow_start".into(),
            Self::Action(i) => format!("a{i}"),
            Self::End => "flow_end".into(),
        }
    }
}

/// What an action does, for its shape and colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Plays, collects or records audio.
    Media,
    /// Acts on the call itself (answer, connect, queue...).
    Call,
    /// Changes the run without touching the call (goto, variable_set).
    Control,
    /// Chooses between paths (branch, condition_*).
    Decision,
    /// Ends the flow (hangup, stop).
    Terminal,
    /// Talks to another service (webhooks, messages, AI...), and any type not listed.
    Service,
}

impl Kind {
    fn of(action_type: ActionType) -> Self {
        use ActionType as T;
        match action_type {
            T::Talk
            | T::Play
            | T::Beep
            | T::Sleep
            | T::DigitsReceive
            | T::DigitsSend
            | T::Echo
            | T::StreamEcho
            | T::RecordingStart
            | T::RecordingStop
            | T::ExternalMediaStart
            | T::ExternalMediaStop
            | T::TranscribeStart
            | T::TranscribeStop
            | T::AiTalk
            | T::ChatbotTalk => Self::Media,
            T::Answer
            | T::Call
            | T::Connect
            | T::AgentCall
            | T::QueueJoin
            | T::ConferenceJoin
            | T::ConfbridgeJoin
            | T::Mute
            | T::Amd => Self::Call,
            T::Goto | T::VariableSet | T::Empty | T::Block => Self::Control,
            T::Branch
            | T::ConditionVariable
            | T::ConditionCallDigits
            | T::ConditionCallStatus
            | T::ConditionDatetime => Self::Decision,
            T::Hangup | T::Stop | T::HangupRelay => Self::Terminal,
            _ => Self::Service,
        }
    }

    /// The Mermaid class name (declared by [`MERMAID_CLASSES`]).
    fn class(self) -> &'static str {
        match self {
            Self::Media => "vfMedia",
            Self::Call => "vfCall",
            Self::Control => "vfControl",
            Self::Decision => "vfDecision",
            Self::Terminal => "vfTerminal",
            Self::Service => "vfService",
        }
    }

    /// `(shape, extra style, fill colour)` in DOT.
    fn dot_shape(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Self::Media => ("box", "rounded,", "#dbeafe"),
            Self::Call => ("box", "rounded,", "#fef3c7"),
            Self::Control => ("hexagon", "", "#ede9fe"),
            Self::Decision => ("diamond", "", "#fce7f3"),
            Self::Terminal => ("octagon", "", "#fecaca"),
            Self::Service => ("parallelogram", "", "#ccfbf1"),
        }
    }

    /// Opening and closing brackets of the Mermaid shape.
    fn mermaid_shape(self) -> (&'static str, &'static str) {
        match self {
            Self::Media | Self::Call => ("(", ")"),
            Self::Control => ("{{", "}}"),
            Self::Decision => ("{", "}"),
            Self::Terminal => ("([", "])"),
            Self::Service => ("[/", "/]"),
        }
    }
}

/// Mermaid class definitions, one per [`Kind`] plus start, end and unreachable. The `vf`
/// prefix keeps them clear of Mermaid keywords such as `call` and `end`.
const MERMAID_CLASSES: &[(&str, &str)] = &[
    ("vfStart", "fill:#d1fae5,stroke:#047857,color:#064e3b"),
    ("vfEnd", "fill:#e5e7eb,stroke:#374151,color:#111827"),
    ("vfMedia", "fill:#dbeafe,stroke:#1d4ed8,color:#1e3a8a"),
    ("vfCall", "fill:#fef3c7,stroke:#b45309,color:#78350f"),
    ("vfControl", "fill:#ede9fe,stroke:#6d28d9,color:#4c1d95"),
    ("vfDecision", "fill:#fce7f3,stroke:#be185d,color:#831843"),
    ("vfTerminal", "fill:#fecaca,stroke:#b91c1c,color:#7f1d1d"),
    ("vfService", "fill:#ccfbf1,stroke:#0f766e,color:#134e4a"),
    (
        "vfUnreachable",
        "fill:#f3f4f6,stroke:#9ca3af,color:#6b7280,stroke-dasharray: 5 5",
    ),
];

/// Grey for unreachable nodes and their edges.
const GREY: &str = "#9ca3af";

/// Why an edge is taken.
#[derive(Debug, Clone, PartialEq, Eq)]
enum EdgeLabel {
    /// From the start node to the first action.
    Start,
    /// The action simply moves on.
    Next,
    /// `branch` keys leading to the same target.
    Keys(Vec<String>),
    /// `branch` default (its `default_target_id`, else the next action).
    Default,
    /// `goto` jump, taken `loop_count` times.
    Loop(i64),
    /// `goto` fall-through once the loop is spent.
    After(i64),
    /// `condition_variable` holds.
    True,
    /// `condition_variable` does not hold.
    False,
}

impl EdgeLabel {
    fn text(&self) -> String {
        match self {
            Self::Start => String::new(),
            Self::Next => "next".into(),
            Self::Keys(keys) => keys
                .iter()
                .map(|k| format!("\"{}\"", clip(k, KEY_CHARS)))
                .collect::<Vec<_>>()
                .join(", "),
            Self::Default => "default".into(),
            Self::Loop(n) => format!("loop ×{n}"),
            Self::After(n) => format!("after {n}"),
            Self::True => "true".into(),
            Self::False => "false".into(),
        }
    }

    /// Line colour, when not the default black.
    fn colour(&self) -> Option<&'static str> {
        match self {
            Self::Loop(_) => Some("#6d28d9"),
            Self::True => Some("#047857"),
            Self::False => Some("#b91c1c"),
            Self::Keys(_) | Self::Default => Some("#be185d"),
            Self::Start | Self::Next | Self::After(_) => None,
        }
    }
}

#[derive(Debug, Clone)]
struct Node {
    at: NodeRef,
    /// `Some` for action nodes; `None` for start and end.
    kind: Option<Kind>,
    /// Display lines, unescaped.
    lines: Vec<String>,
    reachable: bool,
}

#[derive(Debug, Clone)]
struct Edge {
    from: NodeRef,
    to: NodeRef,
    label: EdgeLabel,
    /// Whether its source can be reached from the start.
    live: bool,
}

/// The format-independent drawing: nodes in order (start, actions, end) and edges.
#[derive(Debug, Clone)]
struct Diagram {
    nodes: Vec<Node>,
    edges: Vec<Edge>,
}

impl Diagram {
    fn new(program: &Program) -> Self {
        let exits: Vec<Vec<(Option<usize>, EdgeLabel)>> = program
            .actions()
            .iter()
            .enumerate()
            .map(|(i, action)| exits(program, i, action))
            .collect();
        let reachable = reachable_from_first(&exits);

        let first = if program.is_empty() {
            NodeRef::End
        } else {
            NodeRef::Action(0)
        };
        let mut edges = vec![Edge {
            from: NodeRef::Start,
            to: first,
            label: EdgeLabel::Start,
            live: true,
        }];
        for (i, outs) in exits.into_iter().enumerate() {
            let live = reachable.get(i).copied().unwrap_or(false);
            edges.extend(outs.into_iter().map(|(to, label)| Edge {
                from: NodeRef::Action(i),
                to: to.map_or(NodeRef::End, NodeRef::Action),
                label,
                live,
            }));
        }

        let mut nodes = vec![Node {
            at: NodeRef::Start,
            kind: None,
            lines: vec!["start".into()],
            reachable: true,
        }];
        for (i, action) in program.actions().iter().enumerate() {
            let reachable = reachable.get(i).copied().unwrap_or(false);
            let mut lines = vec![format!("#{i} {}", action.action_type())];
            lines.extend(summary(&action.step));
            if !reachable {
                lines.push("(unreachable)".into());
            }
            nodes.push(Node {
                at: NodeRef::Action(i),
                kind: Some(Kind::of(action.action_type())),
                lines,
                reachable,
            });
        }
        let end_reached = edges.iter().any(|e| e.live && e.to == NodeRef::End);
        nodes.push(Node {
            at: NodeRef::End,
            kind: None,
            lines: vec!["end of flow".into()],
            reachable: end_reached,
        });
        Self { nodes, edges }
    }

    fn dot(&self, title: &str) -> String {
        let title = dot_string(&clip(title, TITLE_CHARS));
        let mut out = String::new();
        // `fmt::Write` for `String` never fails.
        let _ = writeln!(out, "digraph {title} {{");
        let _ = writeln!(
            out,
            "  graph [label={title}, labelloc=t, fontname=\"Helvetica\", fontsize=14];"
        );
        out.push_str("  node [fontname=\"Helvetica\", fontsize=10, style=filled];\n");
        out.push_str("  edge [fontname=\"Helvetica\", fontsize=9];\n");
        for node in &self.nodes {
            let _ = writeln!(out, "  {} [{}];", node.at.id(), dot_node_attrs(node));
        }
        for edge in &self.edges {
            let _ = write!(out, "  {} -> {}", edge.from.id(), edge.to.id());
            let attrs = dot_edge_attrs(edge);
            if attrs.is_empty() {
                out.push_str(";\n");
            } else {
                let _ = writeln!(out, " [{attrs}];");
            }
        }
        out.push_str("}\n");
        out
    }

    fn mermaid(&self) -> String {
        let mut out = String::from("flowchart TD\n");
        for node in &self.nodes {
            let (open, close) = match (node.at, node.kind) {
                (NodeRef::End, _) => ("(((", ")))"),
                (NodeRef::Start, _) | (_, None) => ("([", "])"),
                (_, Some(kind)) => kind.mermaid_shape(),
            };
            let text = node
                .lines
                .iter()
                .map(|l| mermaid_text(l))
                .collect::<Vec<_>>()
                .join("<br/>");
            let _ = writeln!(out, "    {}{open}\"{text}\"{close}", node.at.id());
        }
        for edge in &self.edges {
            let arrow = if edge.live { "-->" } else { "-.->" };
            let text = edge.label.text();
            if text.is_empty() {
                let _ = writeln!(out, "    {} {arrow} {}", edge.from.id(), edge.to.id());
            } else {
                let _ = writeln!(
                    out,
                    "    {} {arrow}|\"{}\"| {}",
                    edge.from.id(),
                    mermaid_text(&text),
                    edge.to.id()
                );
            }
        }
        for (name, style) in MERMAID_CLASSES {
            let _ = writeln!(out, "    classDef {name} {style}");
        }
        for (name, _) in MERMAID_CLASSES {
            let members: Vec<String> = self
                .nodes
                .iter()
                .filter(|n| mermaid_class(n) == *name)
                .map(|n| n.at.id())
                .collect();
            if !members.is_empty() {
                let _ = writeln!(out, "    class {} {name}", members.join(","));
            }
        }
        for (index, edge) in self.edges.iter().enumerate() {
            let colour = if edge.live {
                edge.label.colour()
            } else {
                Some(GREY)
            };
            if let Some(colour) = colour {
                let _ = writeln!(out, "    linkStyle {index} stroke:{colour},color:{colour}");
            }
        }
        out
    }
}

/// Where control may go after action `index`, and why; `None` is the end of the flow.
///
/// The control-flow steps are matched explicitly; every other step (including ones added later)
/// goes through [`other_exits`].
fn exits(program: &Program, index: usize, action: &Action) -> Vec<(Option<usize>, EdgeLabel)> {
    let next = program.next_index(index);
    match &action.step {
        Step::Hangup { .. } | Step::Stop => Vec::new(),
        Step::Goto {
            target, loop_count, ..
        } if *loop_count > 0 => vec![
            (Some(*target), EdgeLabel::Loop(*loop_count)),
            (next, EdgeLabel::After(*loop_count)),
        ],
        Step::Branch(branch) => branch_exits(branch, next),
        Step::ConditionVariable(condition) => vec![
            (next, EdgeLabel::True),
            (condition.false_target.or(next), EdgeLabel::False),
        ],
        _ => other_exits(program, action, next),
    }
}

/// Any other step moves on, except that a `false_target_id` naming an action (the `condition_*`
/// family) makes it a two-way `true`/`false` choice like `condition_variable`.
fn other_exits(
    program: &Program,
    action: &Action,
    next: Option<usize>,
) -> Vec<(Option<usize>, EdgeLabel)> {
    let false_target = action
        .option()
        .get("false_target_id")
        .and_then(serde_json::Value::as_str)
        .and_then(|id| program.index_of(id));
    match false_target {
        Some(target) => vec![(next, EdgeLabel::True), (Some(target), EdgeLabel::False)],
        None => vec![(next, EdgeLabel::Next)],
    }
}

/// One edge per distinct branch target (its keys in key order), then `default`.
fn branch_exits(branch: &Branch, next: Option<usize>) -> Vec<(Option<usize>, EdgeLabel)> {
    let mut grouped: Vec<(usize, Vec<String>)> = Vec::new();
    for (key, &target) in &branch.targets {
        match grouped.iter_mut().find(|(t, _)| *t == target) {
            Some((_, keys)) => keys.push(key.clone()),
            None => grouped.push((target, vec![key.clone()])),
        }
    }
    grouped
        .into_iter()
        .map(|(target, keys)| (Some(target), EdgeLabel::Keys(keys)))
        .chain([(branch.default_target.or(next), EdgeLabel::Default)])
        .collect()
}

/// Which actions a path from the first one reaches.
fn reachable_from_first(exits: &[Vec<(Option<usize>, EdgeLabel)>]) -> Vec<bool> {
    let mut reachable = vec![false; exits.len()];
    let mut stack = if exits.is_empty() { vec![] } else { vec![0] };
    while let Some(i) = stack.pop() {
        match reachable.get_mut(i) {
            Some(seen) if !*seen => *seen = true,
            _ => continue,
        }
        if let Some(outs) = exits.get(i) {
            stack.extend(outs.iter().filter_map(|(to, _)| *to));
        }
    }
    reachable
}

/// Short description lines of a step's key options; none when nothing is worth showing.
fn summary(step: &Step) -> Vec<String> {
    let text = match step {
        Step::Talk(talk) => {
            let text = format!("\"{}\"", clip(&talk.text, TALK_CHARS));
            if talk.next_on_digit {
                return vec![text, "a key skips it".into()];
            }
            text
        }
        Step::Play { urls, .. } => file_names(urls),
        Step::Sleep { duration, .. } | Step::Echo { duration, .. } => duration_text(*duration),
        Step::DigitsReceive(receive) => digits_receive(receive),
        Step::DigitsSend(send) => format!("send {}", send.digits),
        Step::RecordingStart(recording) => recording_start(recording),
        Step::Branch(branch) => format!("on {}", branch.variable),
        Step::Goto {
            target, loop_count, ..
        } if *loop_count > 0 => {
            format!("to #{target}, {loop_count} times")
        }
        Step::Goto { loop_count, .. } => format!("never jumps (loop_count {loop_count})"),
        Step::VariableSet { key, value, .. } => format!("{key}={value}"),
        Step::ConditionVariable(condition) => condition_text(condition),
        Step::Hangup { reason, .. } if !reason.is_empty() => format!("reason {reason}"),
        _ => return Vec::new(),
    };
    vec![clip(&text, SUMMARY_CHARS)]
}

/// The file names of `play` URLs (the last path segment, without query), at most two.
fn file_names(urls: &[String]) -> String {
    let names: Vec<&str> = urls.iter().take(2).map(|u| file_name(u)).collect();
    let mut text = names.join(", ");
    if urls.len() > 2 {
        let _ = write!(text, " +{} more", urls.len() - 2);
    }
    text
}

fn file_name(url: &str) -> &str {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    match path.trim_end_matches('/').rsplit('/').next() {
        Some(name) if !name.is_empty() => name,
        _ => url,
    }
}

fn digits_receive(receive: &DigitsReceive) -> String {
    let mut parts = Vec::new();
    if receive.length > 0 {
        parts.push(format!("length {}", receive.length));
    }
    if !receive.keys.is_empty() {
        parts.push(format!("keys {}", receive.keys));
    }
    parts.push(duration_text(receive.duration));
    parts.join(", ")
}

fn recording_start(recording: &RecordingStart) -> String {
    let mut parts = vec![recording.format.as_str().to_owned()];
    if let Some(max) = recording.max_duration {
        parts.push(format!("max {}", duration_text(max)));
    }
    if let Some(silence) = recording.end_of_silence {
        parts.push(format!("silence {}", duration_text(silence)));
    }
    if let Some(key) = recording.end_of_key {
        parts.push(format!("ends on {key}"));
    }
    if recording.beep_start {
        parts.push("beep".into());
    }
    if recording.channels == 1 {
        parts.push("mono".into());
    }
    parts.join(", ")
}

fn condition_text(condition: &ConditionVariable) -> String {
    let subject = match &condition.subject {
        Subject::Variable(name) => format!("${{{name}}}"),
        Subject::Template(template) => format!("\"{template}\""),
    };
    let op = comparison_symbol(condition.condition);
    match &condition.operand {
        Operand::String(value) => format!("{subject} {op} \"{value}\""),
        Operand::Number(value) => format!("{subject} {op} {value}"),
        Operand::Length(value) => format!("len({subject}) {op} {value}"),
    }
}

fn comparison_symbol(comparison: Comparison) -> &'static str {
    match comparison {
        Comparison::Eq => "==",
        Comparison::Ne => "!=",
        Comparison::Gt => ">",
        Comparison::Ge => ">=",
        Comparison::Lt => "<",
        Comparison::Le => "<=",
    }
}

/// `5 s` for whole seconds, else `1500 ms`.
fn duration_text(duration: Duration) -> String {
    let ms = duration.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{} s", ms / 1000)
    } else {
        format!("{ms} ms")
    }
}

/// `text` on one line (control characters, newlines included, become spaces), cut to `max`
/// characters with a trailing `…`.
fn clip(text: &str, max: usize) -> String {
    let one_line = text.chars().map(|c| if c.is_control() { ' ' } else { c });
    if text.chars().count() <= max {
        return one_line.collect();
    }
    let mut cut: String = one_line.take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// A DOT quoted string. Newlines become `\n` line breaks; a backslash is doubled so that
/// Graphviz's own escapes (`\N`, `\l`...) never fire from flow text, and `&` is written `&amp;`
/// because Graphviz decodes HTML entities in labels.
fn dot_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '&' => out.push_str("&amp;"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn dot_node_attrs(node: &Node) -> String {
    let label = dot_string(&node.lines.join("\n"));
    let (shape, extra, fill) = match (node.at, node.kind) {
        (NodeRef::Start, _) => ("oval", "", "#d1fae5"),
        (NodeRef::End, _) => ("oval", "", "#e5e7eb"),
        (_, Some(kind)) => kind.dot_shape(),
        (_, None) => ("box", "", "#ffffff"),
    };
    let peripheries = if node.at == NodeRef::End {
        ", peripheries=2"
    } else {
        ""
    };
    if node.reachable {
        format!(
            "label={label}, shape={shape}, style=\"{extra}filled\", fillcolor=\"{fill}\"{peripheries}"
        )
    } else {
        format!(
            "label={label}, shape={shape}, style=\"{extra}filled,dashed\", fillcolor=\"#f3f4f6\", \
             color=\"{GREY}\", fontcolor=\"#6b7280\"{peripheries}"
        )
    }
}

fn dot_edge_attrs(edge: &Edge) -> String {
    let mut attrs = Vec::new();
    let text = edge.label.text();
    if !text.is_empty() {
        attrs.push(format!("label={}", dot_string(&text)));
    }
    if edge.live {
        if let Some(colour) = edge.label.colour() {
            attrs.push(format!("color=\"{colour}\", fontcolor=\"{colour}\""));
        }
    } else {
        attrs.push(format!(
            "style=dashed, color=\"{GREY}\", fontcolor=\"{GREY}\""
        ));
    }
    attrs.join(", ")
}

/// Mermaid label text: every character that Mermaid or the HTML it renders could read as
/// syntax becomes a numeric entity code (`#34;`), control characters become spaces.
fn mermaid_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' | '#' | '&' | '<' | '>' | '\\' | '`' | '|' | '%' | '\'' => {
                let _ = write!(out, "#{};", u32::from(c));
            }
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

fn mermaid_class(node: &Node) -> &'static str {
    if !node.reachable {
        return "vfUnreachable";
    }
    match (node.at, node.kind) {
        (NodeRef::Start, _) => "vfStart",
        (NodeRef::End, _) => "vfEnd",
        (_, Some(kind)) => kind.class(),
        (_, None) => "vfService",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn program(actions: Value) -> Program {
        match crate::compile(&actions) {
            Ok(p) => p,
            Err(d) => panic!("flow does not compile: {d:?}"),
        }
    }

    /// `(from, to, label)` of every DOT edge line, ids as written.
    fn dot_edges(dot: &str) -> Vec<(String, String, String)> {
        dot.lines()
            .filter_map(|l| {
                let l = l.trim();
                let (from, rest) = l.split_once(" -> ")?;
                let to: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                let label = rest
                    .split_once("label=\"")
                    .map(|(_, l)| dot_unquote(l))
                    .unwrap_or_default();
                Some((from.to_owned(), to, label))
            })
            .collect()
    }

    /// The text of a DOT quoted string starting right after its opening quote, as Graphviz shows
    /// it (escapes and `&amp;` decoded).
    fn dot_unquote(s: &str) -> String {
        let mut out = String::new();
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            match c {
                '"' => {
                    assert_eq!(
                        out.matches('&').count(),
                        out.matches("&amp;").count(),
                        "bare & in DOT text: {out}"
                    );
                    return out.replace("&amp;", "&");
                }
                '\\' => {
                    let e = chars.next().expect("escape at end");
                    out.push(if e == 'n' { '\n' } else { e });
                }
                c => out.push(c),
            }
        }
        panic!("unterminated DOT string: {s}")
    }

    /// Label of node `id` in DOT, unescaped.
    fn dot_label(dot: &str, id: &str) -> String {
        let prefix = format!("  {id} [label=\"");
        let line = dot
            .lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no node {id} in\n{dot}"));
        dot_unquote(&line[prefix.len()..])
    }

    /// Check DOT structure: strings terminate, braces balance outside strings, every statement
    /// line ends with `;`, every edge endpoint is a declared node.
    fn assert_dot_well_formed(dot: &str) {
        let mut depth = 0i32;
        let mut in_string = false;
        let mut chars = dot.chars();
        while let Some(c) = chars.next() {
            match (in_string, c) {
                (true, '\\') => {
                    let e = chars.next().expect("escape at end");
                    assert_ne!(e, '\n', "raw newline escaped");
                }
                (true, '"') | (false, '"') => in_string = !in_string,
                (true, '\n') => panic!("raw newline inside a DOT string"),
                (false, '{') => depth += 1,
                (false, '}') => {
                    depth -= 1;
                    assert!(depth >= 0, "unbalanced braces");
                }
                _ => {}
            }
        }
        assert!(!in_string, "unterminated string");
        assert_eq!(depth, 0, "unbalanced braces");
        let lines: Vec<&str> = dot.lines().collect();
        assert!(lines[0].starts_with("digraph \""));
        assert_eq!(*lines.last().unwrap(), "}");
        let mut declared = Vec::new();
        for line in &lines[1..lines.len() - 1] {
            assert!(line.ends_with(';'), "statement without ';': {line}");
            let line = line.trim();
            if !line.contains(" -> ")
                && !line.starts_with("graph ")
                && let Some((id, _)) = line.split_once(" [")
            {
                declared.push(id.to_owned());
            }
        }
        let edges = dot_edges(dot);
        assert!(!edges.is_empty());
        for (from, to, _) in edges {
            assert!(declared.contains(&from), "undeclared node {from}");
            assert!(declared.contains(&to), "undeclared node {to}");
        }
    }

    /// Check Mermaid structure: header, exactly two quotes per node/edge-label line, brackets
    /// balanced outside quotes, every edge endpoint declared, linkStyle indices in range.
    fn assert_mermaid_well_formed(mmd: &str) {
        let mut lines = mmd.lines();
        assert_eq!(lines.next(), Some("flowchart TD"));
        let mut declared = Vec::new();
        let mut edge_count = 0usize;
        for line in lines {
            let line = line.trim();
            assert!(!line.is_empty());
            let quotes = line.matches('"').count();
            assert!(quotes == 0 || quotes == 2, "stray quote: {line}");
            // Brackets outside the quoted text.
            let outside: String = line
                .split('"')
                .enumerate()
                .filter(|(i, _)| i % 2 == 0)
                .map(|(_, s)| s)
                .collect();
            for (open, close) in [('(', ')'), ('[', ']'), ('{', '}')] {
                assert_eq!(
                    outside.matches(open).count(),
                    outside.matches(close).count(),
                    "unbalanced {open}{close}: {line}"
                );
            }
            let inside = line.split('"').nth(1).unwrap_or("").replace("<br/>", "");
            assert!(
                !inside.contains(['<', '>', '\\', '`', '&']),
                "unescaped text: {line}"
            );
            if let Some(rest) = line.strip_prefix("linkStyle ") {
                let index: usize = rest.split(' ').next().unwrap().parse().unwrap();
                assert!(index < edge_count, "linkStyle {index} out of range");
            } else if line.starts_with("classDef ") {
            } else if let Some(rest) = line.strip_prefix("class ") {
                for id in rest.split(' ').next().unwrap().split(',') {
                    assert!(declared.iter().any(|d| d == id), "class of undeclared {id}");
                }
            } else if line.contains("-->") || line.contains("-.->") {
                edge_count += 1;
                let from = line.split(' ').next().unwrap();
                let to = line.rsplit(' ').next().unwrap();
                assert!(declared.iter().any(|d| d == from), "undeclared {from}");
                assert!(declared.iter().any(|d| d == to), "undeclared {to}");
            } else {
                let id: String = line
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                assert!(!id.is_empty() && id != "end", "bad node line: {line}");
                declared.push(id);
            }
        }
        assert!(edge_count > 0);
    }

    /// Decode Mermaid entity codes and `<br/>` of the text between the quotes of `line`.
    fn mermaid_decode(line: &str) -> String {
        let text = line.split('"').nth(1).expect("quoted text");
        let text = text.replace("<br/>", "\n");
        let mut out = String::new();
        let mut rest = text.as_str();
        while let Some(pos) = rest.find('#') {
            out.push_str(&rest[..pos]);
            let after = &rest[pos + 1..];
            let end = after.find(';').expect("entity without ';'");
            let code: u32 = after[..end].parse().expect("numeric entity");
            out.push(char::from_u32(code).unwrap());
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        out
    }

    fn mermaid_node_text(mmd: &str, id: &str) -> String {
        let line = mmd
            .lines()
            .map(str::trim)
            .find(|l| {
                l.strip_prefix(id)
                    .is_some_and(|r| r.starts_with(['(', '[', '{']))
            })
            .unwrap_or_else(|| panic!("no node {id} in\n{mmd}"));
        mermaid_decode(line)
    }

    /// `(from, to, label)` of every Mermaid edge, label decoded.
    fn mermaid_edges(mmd: &str) -> Vec<(String, String, String, bool)> {
        mmd.lines()
            .map(str::trim)
            .filter(|l| l.contains("-->") || l.contains("-.->"))
            .map(|l| {
                let from = l.split(' ').next().unwrap().to_owned();
                let to = l.rsplit(' ').next().unwrap().to_owned();
                let label = if l.contains('"') {
                    mermaid_decode(l)
                } else {
                    String::new()
                };
                (from, to, label, l.contains("-.->"))
            })
            .collect()
    }

    fn ivr() -> Program {
        program(json!([
            {"id": "menu", "type": "talk", "option": {"text": "Press 1 for sales, 2 for support"}},
            {"type": "digits_receive", "option": {"length": 1, "key": "#", "duration": 5000}},
            {"type": "branch", "option": {
                "target_ids": {"1": "sales", "2": "support", "3": "support"},
                "default_target_id": "again"}},
            {"id": "sales", "type": "play", "option": {"stream_urls": ["https://x.test/audio/sales.wav?sig=1"]}},
            {"type": "hangup"},
            {"id": "support", "type": "condition_variable", "option": {
                "variable": "open", "condition": "==", "value_type": "string",
                "value_string": "yes", "false_target_id": "closed"}},
            {"type": "talk", "option": {"text": "Connecting"}},
            {"id": "closed", "type": "hangup", "option": {"reason": "busy"}},
            {"id": "again", "type": "goto", "option": {"target_id": "menu", "loop_count": 2}},
            {"type": "stop"}
        ]))
    }

    #[test]
    fn branch_goto_and_condition_edges_are_labelled() {
        let dot = to_dot(&ivr(), "IVR");
        assert_dot_well_formed(&dot);
        let edges = dot_edges(&dot);
        let has = |from: &str, to: &str, label: &str| {
            edges
                .iter()
                .any(|(f, t, l)| f == from && t == to && l == label)
        };
        assert!(has("flow_start", "a0", ""), "{edges:?}");
        assert!(has("a0", "a1", "next"));
        assert!(has("a2", "a3", "\"1\""), "{edges:?}");
        assert!(
            has("a2", "a5", "\"2\", \"3\""),
            "keys sharing a target share an edge"
        );
        assert!(has("a2", "a8", "default"));
        assert!(has("a5", "a6", "true"));
        assert!(has("a5", "a7", "false"));
        assert!(has("a8", "a0", "loop ×2"));
        assert!(has("a8", "a9", "after 2"));
        assert!(has("a6", "a7", "next"));
        // hangup and stop are terminals: no edges out.
        for terminal in ["a4", "a7", "a9"] {
            assert!(edges.iter().all(|(f, _, _)| f != terminal), "{terminal}");
        }
        assert_eq!(edges.len(), 12);
        assert!(dot.contains("  a4 [label=\"#4 hangup\", shape=octagon"));
        assert!(dot.contains("  a2 [label=\"#2 branch\\non voipbin.call.digits\", shape=diamond"));

        // Mermaid has exactly the same edges.
        let mmd = to_mermaid(&ivr());
        assert_mermaid_well_formed(&mmd);
        let m: Vec<(String, String, String)> = mermaid_edges(&mmd)
            .into_iter()
            .map(|(f, t, l, dashed)| {
                assert!(!dashed, "everything is reachable");
                (f, t, l)
            })
            .collect();
        assert_eq!(m, edges);
        assert!(mmd.contains("    a2 -->|\"#34;1#34;\"| a3\n"), "{mmd}");
        assert!(mmd.contains("    a8 -->|\"loop ×2\"| a0\n"));
        assert!(mmd.contains("    a2{\"#35;2 branch<br/>on voipbin.call.digits\"}\n"));
    }

    #[test]
    fn node_summaries_show_the_key_option() {
        let p = program(json!([
            {"type": "answer"},
            {"type": "talk", "option": {"text": "Welcome to the very long greeting that goes on and on", "digits_handle": "next"}},
            {"type": "play", "option": {"stream_urls": ["https://h/a/one.wav", "https://h/two.mp3#t", "https://h/3.wav"]}},
            {"type": "digits_receive", "option": {"length": 4, "key": "#*", "duration": 1500}},
            {"type": "variable_set", "option": {"key": "lang", "value": "en"}},
            {"type": "condition_variable", "option": {"variable": "${count}", "condition": ">=", "value_type": "number", "value_number": 3}},
            {"type": "condition_variable", "option": {"variable": "pin", "condition": "<", "value_type": "length", "value_length": 4}},
            {"type": "recording_start", "option": {"format": "mp3", "duration": 60, "end_of_key": "#", "beep_start": true}},
            {"type": "sleep", "option": {"duration": 2000}},
            {"id": "g", "type": "goto", "option": {"target_id": "g", "loop_count": 0}},
            {"type": "digits_send", "option": {"digits": "12#"}},
            {"type": "hangup", "option": {"reason": "busy"}}
        ]));
        let dot = to_dot(&p, "summaries");
        assert_dot_well_formed(&dot);
        let expect = [
            "#0 answer",
            "#1 talk\n\"Welcome to the very long greeting that …\"\na key skips it",
            "#2 play\none.wav, two.mp3 +1 more",
            "#3 digits_receive\nlength 4, keys #*, 1500 ms",
            "#4 variable_set\nlang=en",
            "#5 condition_variable\n${count} >= 3",
            "#6 condition_variable\nlen(${pin}) < 4",
            "#7 recording_start\nmp3, max 60 s, ends on #, beep",
            "#8 sleep\n2 s",
            "#10 digits_send\nsend 12#",
            "#11 hangup\nreason busy",
        ];
        for line in expect {
            let (title, _) = line.split_once(' ').unwrap();
            let index = &title[1..];
            assert_eq!(dot_label(&dot, &format!("a{index}")), line);
            let mmd = to_mermaid(&p);
            assert_eq!(mermaid_node_text(&mmd, &format!("a{index}")), line);
        }
        let goto = dot_label(&dot, "a9");
        assert!(goto.starts_with("#9 goto\nnever jumps"), "{goto}");
        for i in 0..p.len() {
            let label = dot_label(&dot, &format!("a{i}"));
            assert!(
                label.lines().all(|l| l.chars().count() <= SUMMARY_CHARS),
                "{label}"
            );
        }
    }

    #[test]
    fn nasty_text_is_escaped_in_both_formats() {
        let nasty =
            "say \"hi\" \\N {x} [y] (z) <b>&amp; | #quot; `code` %% 50% it's\nnew\tline ; end";
        let p = program(json!([
            {"type": "talk", "option": {"text": nasty}},
            {"type": "variable_set", "option": {"key": "k\"}\\", "value": "v\n]|"}},
            {"type": "branch", "option": {"variable": "x\"y"}},
        ]));
        let title = "my \"flow\" \\ {title}\n";
        let dot = to_dot(&p, title);
        assert_dot_well_formed(&dot);
        assert!(
            dot.starts_with("digraph \"my \\\"flow\\\" \\\\ {title} \" {\n"),
            "{dot}"
        );
        let expected_talk = format!("#0 talk\n\"{}…\"", &nasty.replace(['\n', '\t'], " ")[..39]);
        assert_eq!(dot_label(&dot, "a0"), expected_talk);
        assert_eq!(dot_label(&dot, "a1"), "#1 variable_set\nk\"}\\=v ]|");
        assert_eq!(dot_label(&dot, "a2"), "#2 branch\non x\"y");
        // A branch without targets simply moves on under `default`.
        let edges = dot_edges(&dot);
        assert!(
            edges
                .iter()
                .any(|(f, t, l)| f == "a2" && t == "flow_end" && l == "default")
        );

        let mmd = to_mermaid(&p);
        assert_mermaid_well_formed(&mmd);
        assert_eq!(mermaid_node_text(&mmd, "a0"), expected_talk);
        assert_eq!(
            mermaid_node_text(&mmd, "a1"),
            "#1 variable_set\nk\"}\\=v ]|"
        );
        for line in mmd.lines().filter(|l| l.contains('"')) {
            let inside = line.split('"').nth(1).unwrap();
            for bad in ['<', '>', '|', '`', '\\', '&', '%'] {
                assert!(
                    !inside.replace("<br/>", "").contains(bad),
                    "{bad} unescaped in {line}"
                );
            }
        }
    }

    #[test]
    fn branch_keys_with_special_characters_label_edges() {
        let p = program(json!([
            {"type": "branch", "option": {"target_ids": {"\"|]": "x", "a\\b": "x"}}},
            {"id": "x", "type": "hangup"}
        ]));
        let dot = to_dot(&p, "keys");
        assert_dot_well_formed(&dot);
        let edges = dot_edges(&dot);
        assert!(
            edges
                .iter()
                .any(|(f, t, l)| f == "a0" && t == "a1" && l == "\"\"|]\", \"a\\b\""),
            "{edges:?}"
        );
        let mmd = to_mermaid(&p);
        assert_mermaid_well_formed(&mmd);
        let m = mermaid_edges(&mmd);
        assert!(
            m.iter()
                .any(|(f, t, l, _)| f == "a0" && t == "a1" && l == "\"\"|]\", \"a\\b\"")
        );
    }

    #[test]
    fn unreachable_actions_are_grey_and_dashed() {
        let p = program(json!([
            {"type": "answer"},
            {"type": "hangup"},
            {"id": "orphan", "type": "talk", "option": {"text": "never said"}},
            {"type": "goto", "option": {"target_id": "orphan", "loop_count": 1}}
        ]));
        let dot = to_dot(&p, "dead code");
        assert_dot_well_formed(&dot);
        let line = |id: &str| {
            dot.lines()
                .find(|l| l.starts_with(&format!("  {id} [")))
                .unwrap()
                .to_owned()
        };
        assert!(!line("a0").contains("dashed"));
        assert!(!line("a1").contains("dashed"));
        for id in ["a2", "a3"] {
            assert!(line(id).contains("dashed"), "{}", line(id));
            assert!(line(id).contains(&format!("color=\"{GREY}\"")));
        }
        assert_eq!(
            dot_label(&dot, "a2"),
            "#2 talk\n\"never said\"\n(unreachable)"
        );
        // Every path ends in the hangup, so the end of the flow is drawn unreached too.
        assert!(line("flow_end").contains("dashed"));
        let dashed_edges: Vec<&str> = dot
            .lines()
            .filter(|l| l.contains(" -> ") && l.contains("style=dashed"))
            .collect();
        assert_eq!(dashed_edges.len(), 3, "{dashed_edges:?}");
        assert!(dot.contains("  a3 -> a2 [label=\"loop ×1\", style=dashed"));

        let mmd = to_mermaid(&p);
        assert_mermaid_well_formed(&mmd);
        assert!(
            mmd.contains("    class a2,a3,flow_end vfUnreachable\n"),
            "{mmd}"
        );
        assert!(mmd.contains("    class a1 vfTerminal\n"));
        let edges = mermaid_edges(&mmd);
        let dashed: Vec<_> = edges.iter().filter(|e| e.3).map(|e| e.0.as_str()).collect();
        assert_eq!(dashed, ["a2", "a3", "a3"]);
        // The dashed edges are greyed by linkStyle, by their position.
        for (index, edge) in edges.iter().enumerate() {
            let grey = format!("    linkStyle {index} stroke:{GREY},color:{GREY}\n");
            assert_eq!(mmd.contains(&grey), edge.3, "edge {index}");
        }
    }

    #[test]
    fn next_id_and_end_of_flow() {
        let p = program(json!([
            {"type": "answer", "next_id": "last"},
            {"type": "beep"},
            {"id": "last", "type": "talk", "option": {"text": "bye"}}
        ]));
        let dot = to_dot(&p, "t");
        assert_dot_well_formed(&dot);
        let edges = dot_edges(&dot);
        assert!(edges.contains(&("a0".into(), "a2".into(), "next".into())));
        assert!(edges.contains(&("a2".into(), "flow_end".into(), "next".into())));
        assert!(dot.contains("  flow_end [label=\"end of flow\", shape=oval, style=\"filled\""));
        assert!(dot_label(&dot, "a1").ends_with("(unreachable)"));
        assert_mermaid_well_formed(&to_mermaid(&p));
    }

    /// Steps without an explicit arm in `exits` move on, unless a `false_target_id` names an
    /// action (the `condition_*` family), which makes them a `true`/`false` choice.
    #[test]
    fn other_steps_with_a_false_target_get_true_and_false_edges() {
        let p = program(json!([
            {"type": "condition_call_digits", "option": {"length": 4, "false_target_id": "no"}},
            {"type": "talk", "option": {"text": "yes"}},
            {"id": "no", "type": "hangup"}
        ]));
        let dot = to_dot(&p, "t");
        assert_dot_well_formed(&dot);
        let edges = dot_edges(&dot);
        assert!(edges.contains(&("a0".into(), "a1".into(), "true".into())));
        assert!(edges.contains(&("a0".into(), "a2".into(), "false".into())));
        assert!(edges.contains(&("a1".into(), "a2".into(), "next".into())));
        assert_eq!(dot_label(&dot, "a0"), "#0 condition_call_digits");
        assert!(dot.contains("  a0 [label=\"#0 condition_call_digits\", shape=diamond"));
        assert_mermaid_well_formed(&to_mermaid(&p));
    }

    #[test]
    fn empty_flow_goes_from_start_to_end() {
        let p = program(json!([]));
        let dot = to_dot(&p, "");
        assert_dot_well_formed(&dot);
        assert_eq!(
            dot_edges(&dot),
            [("flow_start".into(), "flow_end".into(), String::new())]
        );
        let mmd = to_mermaid(&p);
        assert_mermaid_well_formed(&mmd);
        assert!(mmd.contains("    flow_start --> flow_end\n"));
        assert!(mmd.contains("    flow_end(((\"end of flow\")))\n"));
    }

    #[test]
    fn helpers() {
        assert_eq!(clip("abc", 3), "abc");
        assert_eq!(clip("abcd", 3), "ab…");
        assert_eq!(clip("a\nb\u{7}", 9), "a b ");
        assert_eq!(clip("ééé", 2), "é…");
        assert_eq!(file_name("https://h/a/b.wav?x=/y"), "b.wav");
        assert_eq!(file_name("https://h/dir/"), "dir");
        assert_eq!(file_name("x.wav"), "x.wav");
        assert_eq!(duration_text(Duration::from_millis(250)), "250 ms");
        assert_eq!(duration_text(Duration::from_secs(180)), "180 s");
        assert_eq!(dot_string("a\"b\\c\nd\u{1}&"), "\"a\\\"b\\\\c\\nd &amp;\"");
        assert_eq!(mermaid_text("a\"#<b>|é"), "a#34;#35;#60;b#62;#124;é");
    }

    /// Renders with Graphviz when `dot` is installed (skipped otherwise).
    #[test]
    fn graphviz_renders_when_installed() {
        let Ok(mut child) = std::process::Command::new("dot")
            .arg("-Tsvg")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
        else {
            eprintln!("graphviz `dot` not installed; skipping");
            return;
        };
        let dot = to_dot(&ivr(), "IVR \"demo\" \\N <test> &amp;");
        {
            use std::io::Write as _;
            let mut stdin = child.stdin.take().unwrap();
            stdin.write_all(dot.as_bytes()).unwrap();
        }
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "dot failed: {stderr}\n{dot}");
        assert!(stderr.trim().is_empty(), "dot warned: {stderr}");
        let svg = String::from_utf8(out.stdout).unwrap();
        assert!(svg.contains("<svg"));
        assert!(svg.contains("loop ×2"));
        assert!(
            svg.contains("IVR &quot;demo&quot; \\N &lt;test&gt; &amp;amp;"),
            "{svg}"
        );
    }
}
