//! Sources (`V`, `E`) and `Has`-style filters.

use serde_json::Value;

use super::{all, err, Evaluator, Stage};
use crate::gremlin::compile::Source;
use crate::gremlin::filter::{Filter, Obj};
use crate::gremlin::EvalError;
use crate::{EdgeIx, NodeIx};

impl Evaluator<'_> {
    fn in_scope_node(&self, ix: NodeIx) -> bool {
        self.scope.as_ref().is_none_or(|s| s.node_set.contains(&ix))
    }

    fn in_scope_edge(&self, ix: EdgeIx) -> bool {
        self.scope.as_ref().is_none_or(|s| s.edge_set.contains(&ix))
    }

    pub(super) fn v(&mut self, src: &Source, and: &[&Filter]) -> Result<Stage, EvalError> {
        let g = self.graph;
        let f = match src {
            Source::Id(id) => {
                return g
                    .find_node(id)
                    .filter(|ix| self.in_scope_node(*ix))
                    .map(|ix| Stage::Nodes(vec![ix]))
                    .ok_or_else(|| err(format!("Node '{id}' does not exist")))
                    .and_then(|s| self.retain_all(s, and));
            }
            Source::Filter(f) => f,
        };
        let keep = |ix: &NodeIx| all(f, and, &g.node(*ix));
        let out: Vec<NodeIx> = match &self.scope {
            None => g.nodes().filter(keep).collect(),
            Some(s) => s.nodes.iter().copied().filter(keep).collect(),
        };
        self.meter.work(g.node_count())?;
        Ok(Stage::Nodes(out))
    }

    pub(super) fn e(&mut self, src: &Source, and: &[&Filter]) -> Result<Stage, EvalError> {
        let g = self.graph;
        let f = match src {
            Source::Id(id) => {
                return g
                    .find_edge(id)
                    .filter(|ix| self.in_scope_edge(*ix))
                    .map(|ix| Stage::Edges(vec![ix]))
                    .ok_or_else(|| err(format!("Edge '{id}' does not exist")))
                    .and_then(|s| self.retain_all(s, and));
            }
            Source::Filter(f) => f,
        };
        let keep = |ix: &EdgeIx| all(f, and, &g.edge(*ix));
        let out: Vec<EdgeIx> = match &self.scope {
            None => g.edges().filter(keep).collect(),
            Some(s) => s.edges.iter().copied().filter(keep).collect(),
        };
        self.meter.work(g.edge_count())?;
        Ok(Stage::Edges(out))
    }

    pub(super) fn retain(
        &mut self,
        stage: Stage,
        f: &Filter,
        wrong: impl FnOnce() -> EvalError,
    ) -> Result<Stage, EvalError> {
        let g = self.graph;
        let stage = match stage {
            Stage::Nodes(mut v) => {
                self.meter.work(v.len())?;
                v.retain(|ix| f.matches(&g.node(*ix)));
                Stage::Nodes(v)
            }
            Stage::Edges(mut v) => {
                self.meter.work(v.len())?;
                v.retain(|ix| f.matches(&g.edge(*ix)));
                Stage::Edges(v)
            }
            // On values, Has filters the maps of the list (§2.5).
            Stage::List {
                mut items,
                null_if_empty,
            } => {
                self.meter.work(items.len())?;
                items.retain(|v| matches!(v, Value::Object(m) if f.matches(&Obj(m))));
                Stage::List {
                    items,
                    null_if_empty,
                }
            }
            _ => return Err(wrong()),
        };
        Ok(stage)
    }

    fn retain_all(&mut self, mut stage: Stage, filters: &[&Filter]) -> Result<Stage, EvalError> {
        for f in filters {
            stage = self.retain(stage, f, || err("filter on a stage without elements"))?;
        }
        Ok(stage)
    }
}
