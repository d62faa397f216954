//! The validated, immutable program produced by [`compile`](crate::compile), and its
//! control-flow graph (used for the unreachable-action and endless-loop warnings).

use std::collections::HashMap;

use serde_json::Value;

use crate::action::{ActionId, ActionType, Step};
use crate::compile::Diagnostic;

/// A validated, immutable flow: every action type is supported, every option has the right type,
/// every `next_id` and target id is resolved. Share it between runs with `Arc`.
#[derive(Debug, Clone)]
pub struct Program {
    actions: Vec<Action>,
    by_id: HashMap<ActionId, usize>,
    warnings: Vec<Diagnostic>,
}

/// One action of a [`Program`].
#[derive(Debug, Clone)]
pub struct Action {
    id: Option<ActionId>,
    action_type: ActionType,
    next: Option<usize>,
    option: Value,
    pub(crate) step: Step,
}

impl Program {
    /// The warnings `compile` found (unreachable actions, endless loops, `goto` that never jumps).
    pub fn warnings(&self) -> &[Diagnostic] {
        &self.warnings
    }

    /// The number of actions.
    pub fn len(&self) -> usize {
        self.actions.len()
    }

    /// Whether the program has no actions (running it completes at once).
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }

    /// The actions in array order.
    pub fn actions(&self) -> &[Action] {
        &self.actions
    }

    /// The action with this id.
    pub fn action(&self, id: &str) -> Option<&Action> {
        self.index_of(id).and_then(|i| self.actions.get(i))
    }

    /// The array index of the action with this id.
    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.by_id.get(id).copied()
    }

    pub(crate) fn new(actions: Vec<Action>, mut warnings: Vec<Diagnostic>) -> Self {
        let by_id = actions
            .iter()
            .enumerate()
            .filter_map(|(i, a)| a.id.clone().map(|id| (id, i)))
            .collect();
        let mut program = Self {
            actions,
            by_id,
            warnings: Vec::new(),
        };
        warnings.extend(program.graph_warnings());
        warnings.sort_by_key(|d| d.action_index());
        program.warnings = warnings;
        program
    }

    /// Where execution goes after action `index` when it simply moves on: its `next_id`, else the
    /// next element of the array, else `None` (the end of the flow).
    pub(crate) fn next_index(&self, index: usize) -> Option<usize> {
        let action = self.actions.get(index)?;
        action
            .next
            .or_else(|| Some(index + 1).filter(|&n| n < self.actions.len()))
    }

    /// Every place execution may go after action `index`; `None` is the end of the flow.
    /// `hangup` and `stop` have no successors.
    fn successors(&self, index: usize) -> Vec<Option<usize>> {
        let Some(action) = self.actions.get(index) else {
            return Vec::new();
        };
        let next = self.next_index(index);
        match &action.step {
            Step::Hangup { .. } | Step::Stop => Vec::new(),
            Step::Goto { target, loop_count } if *loop_count > 0 => vec![Some(*target), next],
            Step::Branch(b) => b
                .targets
                .values()
                .map(|t| Some(*t))
                .chain([b.default_target.or(next)])
                .collect(),
            Step::ConditionVariable(c) => vec![next, c.false_target.or(next)],
            Step::ConditionCallDigits { false_target, .. }
            | Step::ConditionCallStatus { false_target, .. } => {
                vec![next, false_target.or(next)]
            }
            Step::ConditionDatetime(c) => vec![next, c.false_target.or(next)],
            _ => vec![next],
        }
    }

    fn graph_warnings(&self) -> Vec<Diagnostic> {
        let n = self.actions.len();
        let mut warnings = Vec::new();
        if n == 0 {
            warnings.push(Diagnostic::warning(
                "actions".into(),
                "the flow has no actions".into(),
            ));
            return warnings;
        }
        let successors: Vec<Vec<Option<usize>>> = (0..n).map(|i| self.successors(i)).collect();

        // Forward reachability from the first action.
        let mut reachable = vec![false; n];
        let mut stack = vec![0usize];
        while let Some(i) = stack.pop() {
            if std::mem::replace(&mut reachable[i], true) {
                continue;
            }
            stack.extend(successors[i].iter().flatten().copied());
        }

        // Backward reachability from the exits (end of flow, hangup, stop).
        let mut predecessors = vec![Vec::new(); n];
        for (i, succ) in successors.iter().enumerate() {
            for s in succ.iter().flatten() {
                predecessors[*s].push(i);
            }
        }
        let mut can_exit = vec![false; n];
        let mut stack: Vec<usize> = (0..n)
            .filter(|&i| successors[i].is_empty() || successors[i].contains(&None))
            .collect();
        while let Some(i) = stack.pop() {
            if std::mem::replace(&mut can_exit[i], true) {
                continue;
            }
            stack.extend(predecessors[i].iter().copied());
        }

        let mut reported = vec![false; n];
        for i in 0..n {
            if !reachable[i] {
                warnings.push(Diagnostic::warning(
                    format!("actions[{i}]"),
                    "unreachable: no path from the first action leads here".into(),
                ));
            } else if !can_exit[i] && !reported[i] {
                warnings.push(Diagnostic::warning(
                    format!("actions[{i}]"),
                    "enters a loop with no way out (no hangup, stop or end of the flow is \
                     reachable from here); it repeats until the execution limit ends the flow"
                        .into(),
                ));
                // Everything reachable from here is in the same trap; report it once.
                let mut stack = vec![i];
                while let Some(j) = stack.pop() {
                    if std::mem::replace(&mut reported[j], true) {
                        continue;
                    }
                    stack.extend(successors[j].iter().flatten().copied());
                }
            }
        }
        warnings
    }
}

impl Action {
    pub(crate) fn new(
        id: Option<ActionId>,
        action_type: ActionType,
        next: Option<usize>,
        option: Value,
        step: Step,
    ) -> Self {
        Self {
            id,
            action_type,
            next,
            option,
            step,
        }
    }

    /// The action's id, if it has one.
    pub fn id(&self) -> Option<&ActionId> {
        self.id.as_ref()
    }

    /// The action's type.
    pub fn action_type(&self) -> ActionType {
        self.action_type
    }

    /// The action's `option` object as written (before `${}` substitution); `{}` if absent.
    pub fn option(&self) -> &Value {
        &self.option
    }
}
