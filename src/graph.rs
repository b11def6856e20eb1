//! `pipeline graph`: the stage/topic graph of a validated pipeline as Mermaid or Graphviz
//! DOT. Stages are boxes `name (type)`, topics rounded nodes; edges go stage → topic for
//! outputs (dashed for dead letters) and topic → stage labelled with the input port.
//! Nodes and edges come in file order, so the output is deterministic.

use std::fmt::Write;

use framework::validate::ValidatedPipeline;

#[derive(Debug, Clone, PartialEq, Eq)]
enum EdgeKind {
    Output,
    DeadLetter,
    Input(String),
}

struct Graph {
    name: String,
    /// (name, connector type)
    stages: Vec<(String, String)>,
    topics: Vec<String>,
    /// (stage index, topic index, kind)
    edges: Vec<(usize, usize, EdgeKind)>,
}

impl Graph {
    fn of(pipeline: &ValidatedPipeline) -> Self {
        let mut graph = Graph {
            name: pipeline.spec.name.clone(),
            stages: Vec::new(),
            topics: Vec::new(),
            edges: Vec::new(),
        };
        for (s, stage) in pipeline.stages.iter().enumerate() {
            graph
                .stages
                .push((stage.spec.name.clone(), stage.registration.name.to_string()));
            for (port, topic) in stage.registration.inputs.iter().zip(&stage.input_topics) {
                let t = graph.topic(topic);
                graph
                    .edges
                    .push((s, t, EdgeKind::Input(port.name.to_string())));
            }
            if let Some(topic) = &stage.spec.output {
                let t = graph.topic(topic);
                graph.edges.push((s, t, EdgeKind::Output));
            }
            if let Some(topic) = &stage.spec.dead_letter {
                let t = graph.topic(topic);
                graph.edges.push((s, t, EdgeKind::DeadLetter));
            }
        }
        graph
    }

    fn topic(&mut self, name: &str) -> usize {
        match self.topics.iter().position(|t| t == name) {
            Some(i) => i,
            None => {
                self.topics.push(name.to_string());
                self.topics.len() - 1
            }
        }
    }
}

/// Mermaid `flowchart LR`; node ids are positional (`s0`, `t0`) because stage and topic
/// names may hold characters Mermaid ids cannot.
pub fn mermaid(pipeline: &ValidatedPipeline) -> String {
    let graph = Graph::of(pipeline);
    let mut out = String::new();
    let _ = writeln!(out, "---\ntitle: {}\n---", mermaid_text(&graph.name));
    out.push_str("flowchart LR\n");
    for (i, (name, connector)) in graph.stages.iter().enumerate() {
        let _ = writeln!(
            out,
            "    s{i}[\"{} ({})\"]",
            mermaid_text(name),
            mermaid_text(connector)
        );
    }
    for (i, topic) in graph.topics.iter().enumerate() {
        let _ = writeln!(out, "    t{i}([\"{}\"])", mermaid_text(topic));
    }
    for (s, t, kind) in &graph.edges {
        let _ = match kind {
            EdgeKind::Output => writeln!(out, "    s{s} --> t{t}"),
            EdgeKind::DeadLetter => writeln!(out, "    s{s} -.->|dead letter| t{t}"),
            EdgeKind::Input(port) => writeln!(out, "    t{t} -->|{}| s{s}", mermaid_text(port)),
        };
    }
    out
}

/// Graphviz DOT (`dot -Tsvg`).
pub fn dot(pipeline: &ValidatedPipeline) -> String {
    let graph = Graph::of(pipeline);
    let mut out = String::new();
    let _ = writeln!(out, "digraph {} {{", dot_string(&graph.name));
    out.push_str("    rankdir=LR;\n");
    for (i, (name, connector)) in graph.stages.iter().enumerate() {
        let label = dot_string(&format!("{name} ({connector})"));
        let _ = writeln!(out, "    s{i} [shape=box, label={label}];");
    }
    for (i, topic) in graph.topics.iter().enumerate() {
        let _ = writeln!(
            out,
            "    t{i} [shape=ellipse, label={}];",
            dot_string(topic)
        );
    }
    for (s, t, kind) in &graph.edges {
        let _ = match kind {
            EdgeKind::Output => writeln!(out, "    s{s} -> t{t};"),
            EdgeKind::DeadLetter => {
                writeln!(
                    out,
                    "    s{s} -> t{t} [style=dashed, label=\"dead letter\"];"
                )
            }
            EdgeKind::Input(port) => {
                writeln!(out, "    t{t} -> s{s} [label={}];", dot_string(port))
            }
        };
    }
    out.push_str("}\n");
    out
}

/// Text inside a quoted Mermaid label: quotes and markup characters as entity codes.
fn mermaid_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' => out.push_str("#quot;"),
            '|' => out.push_str("#124;"),
            '<' => out.push_str("#lt;"),
            '>' => out.push_str("#gt;"),
            c => out.push(c),
        }
    }
    out
}

/// A DOT double-quoted string.
fn dot_string(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_escape_quotes_and_markup() {
        assert_eq!(mermaid_text("a\"b|c<d>"), "a#quot;b#124;c#lt;d#gt;");
        assert_eq!(dot_string("a\"b\\c"), "\"a\\\"b\\\\c\"");
    }
}
