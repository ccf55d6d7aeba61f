//! Result JSON (skydive-behaviour.md §1.7), serialised straight from graph views.

use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};

use super::Output;
use crate::{EdgeIx, NodeIx, View};

/// `Serialize` view of an [`Output`]: node sets → `[node, ...]`, graphs →
/// `[{"Nodes":[...],"Edges":[...]}]`, paths → `[[node, ...], ...]`, values as they are.
pub struct OutputJson<'a> {
    output: &'a Output,
    graph: View<'a>,
}

impl<'a> OutputJson<'a> {
    pub(crate) fn new(output: &'a Output, graph: View<'a>) -> Self {
        OutputJson { output, graph }
    }
}

struct NodesJson<'a>(&'a [NodeIx], View<'a>);
struct EdgesJson<'a>(&'a [EdgeIx], View<'a>);
struct GraphJson<'a>(&'a [NodeIx], &'a [EdgeIx], View<'a>);

impl Serialize for NodesJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for ix in self.0 {
            seq.serialize_element(&self.1.node(*ix))?;
        }
        seq.end()
    }
}

impl Serialize for EdgesJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for ix in self.0 {
            seq.serialize_element(&self.1.edge(*ix))?;
        }
        seq.end()
    }
}

impl Serialize for GraphJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(2))?;
        map.serialize_entry("Nodes", &NodesJson(self.0, self.2))?;
        map.serialize_entry("Edges", &EdgesJson(self.1, self.2))?;
        map.end()
    }
}

impl Serialize for OutputJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let g = self.graph;
        match self.output {
            Output::Graph { nodes, edges } => {
                let mut seq = s.serialize_seq(Some(1))?;
                seq.serialize_element(&GraphJson(nodes, edges, g))?;
                seq.end()
            }
            Output::Nodes(nodes) => NodesJson(nodes, g).serialize(s),
            Output::Edges(edges) => EdgesJson(edges, g).serialize(s),
            Output::Paths(paths) => {
                let mut seq = s.serialize_seq(Some(paths.len()))?;
                for p in paths {
                    seq.serialize_element(&NodesJson(p, g))?;
                }
                seq.end()
            }
            Output::Value(v) => v.serialize(s),
            Output::Ext(e) => e.to_json(g).serialize(s),
        }
    }
}
