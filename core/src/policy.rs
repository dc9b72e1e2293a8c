//! Who may write what (DOMAIN.md, product rule version 2): one pure check that the
//! node runs before it saves an edit and the hub runs before it stores anything, so
//! an honest node never makes a change the hub refuses.
//!
//! # Owners
//!
//! - **The standard** owns a template task's `star`, `points`, `veto`, `title` and
//!   `template`: they are written only by the deterministic template change, which
//!   the check recognises by its hash ([`crate::document::template_changes`]).
//! - **The community** (any of its devices) creates its own tasks, owns every task's
//!   `status`, `progress`, `owner`, `due`, and its own tasks' `title`, `star` and
//!   `points`. Own tasks are never veto tasks. Evidence notes are appended, written
//!   once, and may be marked withdrawn; never deleted or rewritten.
//! - **The district** owns `review`: the office reviews any task, a task force only
//!   the tasks of its star ([`Role`]). A review is written whole in one change and
//!   pins what the reviewer saw; the pins must be the task's real values.
//! - Nobody deletes a task, replaces one, or touches the document's root.
//!
//! # How a change is judged
//!
//! Every operation of every new change is judged, not only the ones visible in a
//! diff, against the document it merges into:
//!
//! 1. **Its content is honest** (else [`Refusal::Malformed`]): the change follows its
//!    actor's previous change, its operation counters are above those of its
//!    dependencies, every operation it names (object, list position, overwritten
//!    value) is in its own causal history, and an overwrite names exactly the
//!    values its writer could see. This is what a forged change gets wrong: a delete
//!    aimed at an operation outside its declared history has no effect in the
//!    change's own diff, but takes effect once merged.
//! 2. **Its target belongs to the writer** (else [`Refusal::Denied`]): the object an
//!    operation writes is located in the merged document, whatever is visible, so a
//!    write hidden in an overwritten object is judged like any other.
//! 3. **Its value fits the schema** (else [`Refusal::Invalid`]): type, range, known
//!    star, required fields of what it creates. These are checks of one value by one
//!    writer. Rules that span fields written by different people (awarded against
//!    the task's points, edits after a review) are never checked here: any merge of
//!    allowed changes is a valid document, and those rules are decided when it is
//!    read ([`crate::Task::changed_since_review`], [`crate::scoring`]).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::panic::{AssertUnwindSafe, catch_unwind};

use automerge::legacy::{ElementId, Key, ObjectId, OpId, OpType};
use automerge::{ActorId, Automerge, Change, ChangeHash, ObjId, ObjType, Prop, ReadDoc};
use automerge::{ScalarValue, Value};
use chrono::NaiveDate;

use crate::document::{MAX_TEXT_CHARS, genesis_hash, template_changes};
use crate::standard::{KindStandard, is_key};
use crate::{EditError, TaskStatus};

/// A reviewer's role: the district office reviews every task, a task force the tasks
/// of its own star.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Role {
    /// The district office (办公室).
    Office,
    /// The task force of one star (专班), by star key.
    TaskForce(String),
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Role::Office => f.write_str("the district office"),
            Role::TaskForce(star) => write!(f, "the task force of star {star}"),
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    /// `office`, or a star key for that star's task force.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "office" => Ok(Role::Office),
            star if is_key(star) => Ok(Role::TaskForce(star.to_string())),
            other => Err(format!("{other:?} is not a role: use office or a star key")),
        }
    }
}

/// Who delivered a change, as the hub knows from a verified certificate or account
/// (and the node knows of itself).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Writer {
    /// A device of a community.
    Device {
        /// The community's id.
        community: String,
        /// The device's name.
        device: String,
    },
    /// A district reviewer.
    Reviewer {
        /// The reviewer's name.
        name: String,
        /// What the reviewer may review.
        role: Role,
    },
}

impl std::fmt::Display for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Writer::Device { community, device } => {
                write!(f, "device {device} of community {community}")
            }
            Writer::Reviewer { name, .. } => write!(f, "reviewer {name}"),
        }
    }
}

/// Why a change was refused. Nothing is stored when one change of a batch is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The writer does not own what the change writes (PERMISSION_DENIED).
    #[error("{writer} may not {what}: {rule}")]
    Denied {
        /// Who tried.
        writer: String,
        /// What, e.g. `delete tasks/u-safety-grid/review`.
        what: String,
        /// The rule, in words.
        rule: String,
    },
    /// The change is not one an honest program writes (INVALID_ARGUMENT).
    #[error("change {change} is malformed: {problem}")]
    Malformed {
        /// The change's hash, shortened.
        change: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A value does not fit the schema (INVALID_ARGUMENT).
    #[error("{path}: {problem}")]
    Invalid {
        /// Where.
        path: String,
        /// What is wrong.
        problem: String,
    },
}

/// The write rules for one community's document.
#[derive(Debug, Clone)]
pub struct Policy {
    community: String,
    kind: KindStandard,
    genesis: HashSet<ChangeHash>,
    template_changes: HashSet<ChangeHash>,
    template_keys: HashSet<String>,
}

impl Policy {
    /// The rules for `community`, rated against `kind` (its kind's standard).
    pub fn new(community: &str, kind: &KindStandard) -> Result<Policy, EditError> {
        let mut policy = Policy {
            community: community.to_string(),
            kind: kind.clone(),
            genesis: genesis_hash(community).into_iter().collect(),
            template_changes: HashSet::new(),
            template_keys: HashSet::new(),
        };
        policy.add_edition(kind)?;
        Ok(policy)
    }

    /// Also accepts the template changes of another edition of the standard, so a
    /// node that applied an earlier edition offline is never stranded.
    pub fn add_edition(&mut self, kind: &KindStandard) -> Result<(), EditError> {
        for (key, change) in template_changes(&self.community, kind)? {
            self.template_changes.insert(change.hash());
            self.template_keys.insert(key);
        }
        Ok(())
    }

    /// The community these rules are for.
    pub fn community(&self) -> &str {
        &self.community
    }

    /// Checks every change in `new` (already merged into `doc`, on top of `before`)
    /// against the rules for `writer`. `new` must be in causal order, as
    /// `Automerge::get_changes` returns it.
    pub fn check<'a>(
        &self,
        writer: &Writer,
        doc: &'a Automerge,
        new: &'a [Change],
    ) -> Result<(), Refusal> {
        self.check_touched(writer, doc, new).map(|_| ())
    }

    /// [`Policy::check`], also saying which tasks the accepted changes wrote into,
    /// found on the way at no extra cost: whoever rescores the document need read
    /// only those.
    pub fn check_touched<'a>(
        &self,
        writer: &Writer,
        doc: &'a Automerge,
        new: &'a [Change],
    ) -> Result<Touched, Refusal> {
        let mut touched = Touched::default();
        if new.is_empty() {
            return Ok(touched);
        }
        if let Writer::Device { community, .. } = writer
            && *community != self.community
        {
            return Err(denied(
                writer,
                format!("write community/{}", self.community),
                "a device writes only its own community's document",
            ));
        }
        let mut history = History::new(doc, new);
        for change in new {
            let hash = change.hash();
            history.enter(change)?;
            if self.genesis.contains(&hash) || self.template_changes.contains(&hash) {
                // Byte for byte what every replica makes from the standard.
                touched.everything = true;
                continue;
            }
            let expanded = catch_unwind(AssertUnwindSafe(|| change.decode())).map_err(|_| {
                Refusal::Malformed {
                    change: short(&hash),
                    problem: "its operations cannot be decoded".into(),
                }
            })?;
            let mut judge = Judge {
                expanded: &expanded,
                policy: self,
                writer,
                doc,
                history: &mut history,
                change,
                hash,
                start_op: expanded.start_op.get(),
                created: HashMap::new(),
                last_write: HashMap::new(),
                paths: HashMap::new(),
                touched: &mut touched,
            };
            for (index, op) in expanded.operations.iter().enumerate() {
                judge.op(index as u64, op)?;
            }
            judge.finish()?;
        }
        Ok(touched)
    }
}

/// Where accepted changes wrote in a community's document: the tasks whose
/// objects (the task's map, its notes, its review) any of their operations wrote
/// into, or everything (the document's first change, the standard's template, any
/// write outside one task). A task not named here reads the same as before the
/// changes were merged, since only an operation on an object can change how the
/// object reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Touched {
    /// Ids of the tasks written into.
    pub tasks: BTreeSet<String>,
    /// Something beyond single tasks was written: read the whole document.
    pub everything: bool,
}

impl Touched {
    /// Adds what later changes touched.
    pub fn extend(&mut self, later: Touched) {
        self.everything |= later.everything;
        if !self.everything {
            self.tasks.extend(later.tasks);
        } else {
            self.tasks.clear();
        }
    }
}

/// Nobody but the hub writes the district document.
pub fn check_district(writer: &Writer, new: &[Change]) -> Result<(), Refusal> {
    if new.is_empty() {
        Ok(())
    } else {
        Err(denied(writer, "write the district document".into(), "only the hub publishes it"))
    }
}

fn denied(writer: &Writer, what: String, rule: &str) -> Refusal {
    Refusal::Denied { writer: writer.to_string(), what, rule: rule.to_string() }
}

fn invalid(path: &str, problem: impl Into<String>) -> Refusal {
    Refusal::Invalid { path: path.to_string(), problem: problem.into() }
}

fn short(hash: &ChangeHash) -> String {
    hash.to_string()[..8].to_string()
}

// ------------------------------------------------------------------ causal history

/// The causal history of each new change, computed once per batch in time linear in
/// the batch: among the new changes, a vector clock per change (actor → highest
/// sequence number among its new ancestors); for the stored document, the few old
/// changes the batch builds on, whose non-ancestors Automerge lists cheaply. Exact,
/// because every change is checked to follow its actor's previous one (so an actor's
/// changes in any history are a prefix of its sequence).
struct History<'a> {
    doc: &'a Automerge,
    /// New changes: actor, sequence number, max op.
    new: HashMap<ChangeHash, (&'a ActorId, u64, u64)>,
    /// New changes by actor and sequence number.
    by_seq: HashMap<(&'a ActorId, u64), ChangeHash>,
    /// Per new change: the highest sequence number of each actor among its new
    /// ancestors (itself excluded).
    new_clock: HashMap<ChangeHash, std::rc::Rc<HashMap<&'a ActorId, u64>>>,
    old_frontier: HashMap<ChangeHash, std::rc::Rc<BTreeSet<ChangeHash>>>,
    /// For a set of old changes: every change that is not their ancestor, with its
    /// actor and sequence number.
    outside: HashMap<Vec<ChangeHash>, HashMap<ChangeHash, (ActorId, u64)>>,
}

impl<'a> History<'a> {
    fn new(doc: &'a Automerge, new: &'a [Change]) -> History<'a> {
        History {
            doc,
            new: new.iter().map(|c| (c.hash(), (c.actor_id(), c.seq(), c.max_op()))).collect(),
            by_seq: new.iter().map(|c| ((c.actor_id(), c.seq()), c.hash())).collect(),
            new_clock: HashMap::new(),
            old_frontier: HashMap::new(),
            outside: HashMap::new(),
        }
    }

    /// Records `change`'s ancestry and checks its place in it.
    fn enter(&mut self, change: &'a Change) -> Result<(), Refusal> {
        let hash = change.hash();
        let malformed = |problem: String| Refusal::Malformed { change: short(&hash), problem };
        let mut merged: HashMap<&'a ActorId, u64> = HashMap::new();
        let mut frontier: Option<std::rc::Rc<BTreeSet<ChangeHash>>> = None;
        let mut old_deps: BTreeSet<ChangeHash> = BTreeSet::new();
        let mut max_dep_op = 0;
        for dep in change.deps() {
            if let Some((actor, seq, max_op)) = self.new.get(dep).copied() {
                let Some(theirs) = self.new_clock.get(dep).cloned() else {
                    return Err(malformed("it comes before a change it depends on".into()));
                };
                for (a, s) in theirs.iter() {
                    let e = merged.entry(a).or_insert(0);
                    *e = (*e).max(*s);
                }
                let e = merged.entry(actor).or_insert(0);
                *e = (*e).max(seq);
                if let Some(old) = self.old_frontier.get(dep) {
                    frontier = match frontier {
                        None => Some(old.clone()),
                        Some(f) if f == *old => Some(f),
                        Some(f) => Some(std::rc::Rc::new(f.union(old).copied().collect())),
                    };
                }
                max_dep_op = max_dep_op.max(max_op);
            } else {
                let Some(meta) = self.doc.get_change_meta_by_hash(dep) else {
                    return Err(malformed(
                        "it depends on a change the document does not have".into(),
                    ));
                };
                old_deps.insert(*dep);
                max_dep_op = max_dep_op.max(meta.max_op);
            }
        }
        let clock = std::rc::Rc::new(merged);
        let frontier = match (frontier, old_deps.is_empty()) {
            (Some(f), true) => f,
            (Some(f), false) => std::rc::Rc::new(f.union(&old_deps).copied().collect()),
            (None, _) => std::rc::Rc::new(old_deps),
        };
        if change.start_op().get() <= max_dep_op {
            return Err(malformed(
                "its operation counters do not follow those of the changes it depends on".into(),
            ));
        }
        // It must follow its actor's previous change (Automerge's own changes always do).
        if change.seq() > 1 {
            let previous_new = self.by_seq.contains_key(&(change.actor_id(), change.seq() - 1));
            let follows = if previous_new {
                clock.get(change.actor_id()).is_some_and(|s| *s + 1 >= change.seq())
            } else {
                // Old changes of the actor outside the history mean a gap.
                !self
                    .outside_of(&frontier)
                    .values()
                    .any(|(actor, seq)| actor == change.actor_id() && *seq < change.seq())
            };
            if !follows {
                return Err(malformed("it does not build on its actor's previous change".into()));
            }
        }
        self.new_clock.insert(hash, clock);
        self.old_frontier.insert(hash, frontier);
        Ok(())
    }

    fn outside_of(
        &mut self,
        frontier: &BTreeSet<ChangeHash>,
    ) -> &HashMap<ChangeHash, (ActorId, u64)> {
        let key: Vec<ChangeHash> = frontier.iter().copied().collect();
        let doc = self.doc;
        let new = &self.new;
        self.outside.entry(key.clone()).or_insert_with(|| {
            doc.get_changes_meta(&key)
                .into_iter()
                .filter(|meta| !new.contains_key(&meta.hash))
                .map(|meta| (meta.hash, (meta.actor.into_owned(), meta.seq)))
                .collect()
        })
    }

    /// Whether the change `of` (new) has `hash` in its causal history.
    fn has_ancestor(&mut self, of: &ChangeHash, hash: &ChangeHash) -> bool {
        if let Some((actor, seq, _)) = self.new.get(hash).copied() {
            return self.new_clock.get(of).and_then(|c| c.get(actor)).is_some_and(|s| *s >= seq);
        }
        let frontier = self.old_frontier.get(of).cloned().unwrap_or_default();
        self.doc.get_change_meta_by_hash(hash).is_some()
            && !self.outside_of(&frontier).contains_key(hash)
    }
}

// ------------------------------------------------------------------ judging operations

/// Where an operation writes, from the schema's point of view.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Place {
    Root,
    Tasks,
    Task(String),
    Notes(String),
    Note(String),
    Review(String),
    Seen(String),
    Elsewhere(String),
}

/// What a change created, to check it is complete when the change ends.
#[derive(Debug)]
struct Created {
    place: Place,
    /// The object that holds it (the task's map for a review), for reading values
    /// as they were at the change's dependencies.
    parent: Option<ObjId>,
    values: HashMap<String, ScalarValue>,
    objects: HashSet<String>,
}

struct Judge<'p, 'd, 'h> {
    expanded: &'p automerge::ExpandedChange,
    policy: &'p Policy,
    writer: &'p Writer,
    doc: &'d Automerge,
    history: &'h mut History<'d>,
    change: &'d Change,
    hash: ChangeHash,
    start_op: u64,
    /// Objects created by this change, by their operation counter.
    created: HashMap<u64, Created>,
    /// The latest operation of this change on each (object, key).
    last_write: HashMap<(ObjId, String), OpId>,
    paths: HashMap<ObjId, Place>,
    touched: &'h mut Touched,
}

impl Judge<'_, '_, '_> {
    fn malformed(&self, problem: impl Into<String>) -> Refusal {
        Refusal::Malformed { change: short(&self.hash), problem: problem.into() }
    }

    fn deny(&self, what: String, rule: &str) -> Refusal {
        denied(self.writer, what, rule)
    }

    fn actor(&self) -> &ActorId {
        self.change.actor_id()
    }

    /// Checks that an operation this change names is in its causal history.
    fn in_history(&mut self, index: u64, id: &OpId) -> Result<(), Refusal> {
        let OpId(counter, actor) = id;
        if actor == self.actor() && *counter >= self.start_op {
            return if *counter < self.start_op + index {
                Ok(())
            } else {
                Err(self.malformed("an operation names a later operation of its own change"))
            };
        }
        let exid = ObjId::Id(*counter, actor.clone(), 0);
        let found = self.doc.hash_for_opid(&exid);
        match found {
            Some(hash) if self.history.has_ancestor(&self.hash, &hash) => Ok(()),
            Some(_) => Err(self.malformed(format!(
                "an operation names operation {counter}@{}, which is outside the change's history",
                &actor.to_hex_string()[..8.min(actor.to_hex_string().len())]
            ))),
            None => {
                Err(self.malformed("an operation names an operation the document does not have"))
            }
        }
    }

    fn exid(&self, id: &ObjectId) -> ObjId {
        match id {
            ObjectId::Root => ObjId::Root,
            ObjectId::Id(OpId(counter, actor)) => ObjId::Id(*counter, actor.clone(), 0),
        }
    }

    fn place_of(&mut self, obj: &ObjId) -> Result<Place, Refusal> {
        if let Some(place) = self.paths.get(obj) {
            return Ok(place.clone());
        }
        let place = match obj {
            ObjId::Root => Place::Root,
            ObjId::Id(..) => {
                let parents = self
                    .doc
                    .parents(obj)
                    .map_err(|_| self.malformed("an operation writes into an unknown object"))?;
                let path: Vec<Prop> = parents.path().into_iter().map(|(_, prop)| prop).collect();
                let keys: Vec<String> = path
                    .iter()
                    .map(|p| match p {
                        Prop::Map(k) => k.clone(),
                        Prop::Seq(i) => i.to_string(),
                    })
                    .collect();
                let parts: Vec<&str> = keys.iter().map(String::as_str).collect();
                let map_key = |i: usize| matches!(path.get(i), Some(Prop::Map(_)));
                match parts.as_slice() {
                    ["tasks"] if map_key(0) => Place::Tasks,
                    ["tasks", id] if map_key(1) => Place::Task(id.to_string()),
                    ["tasks", id, "notes"] if map_key(2) => Place::Notes(id.to_string()),
                    ["tasks", id, "notes", _] if !map_key(3) => Place::Note(id.to_string()),
                    ["tasks", id, "review"] if map_key(2) => Place::Review(id.to_string()),
                    ["tasks", id, "review", "seen"] if map_key(3) => Place::Seen(id.to_string()),
                    _ => Place::Elsewhere(keys.join("/")),
                }
            }
        };
        self.paths.insert(obj.clone(), place.clone());
        Ok(place)
    }

    fn op(&mut self, index: u64, op: &automerge::legacy::Op) -> Result<(), Refusal> {
        let my_id = OpId(self.start_op + index, self.actor().clone());
        // 1. Honest content: everything it names is in its history.
        if let ObjectId::Id(id) = &op.obj {
            self.in_history(index, id)?;
        }
        if let Key::Seq(ElementId::Id(id)) = &op.key {
            self.in_history(index, id)?;
        }
        for pred in op.pred.iter() {
            self.in_history(index, pred)?;
        }
        let obj = self.exid(&op.obj);
        let obj_counter = match &op.obj {
            ObjectId::Id(OpId(counter, actor))
                if actor == self.actor() && *counter >= self.start_op =>
            {
                Some(*counter)
            }
            _ => None,
        };
        let place = match obj_counter.and_then(|c| self.created.get(&c)) {
            Some(created) => created.place.clone(),
            None => self.place_of(&obj)?,
        };
        let key = match &op.key {
            Key::Map(key) => Some(key.to_string()),
            Key::Seq(_) => None,
        };
        match (&place, &key) {
            (Place::Tasks, Some(id))
            | (
                Place::Task(id)
                | Place::Notes(id)
                | Place::Note(id)
                | Place::Review(id)
                | Place::Seen(id),
                _,
            ) => {
                if !self.touched.everything && !self.touched.tasks.contains(id) {
                    self.touched.tasks.insert(id.clone());
                }
            }
            _ => self.touched.everything = true,
        }
        // An overwrite names exactly what its writer could see.
        if let Some(key) = &key {
            let expected: BTreeSet<(u64, ActorId)> =
                match self.last_write.get(&(obj.clone(), key.clone())) {
                    Some(OpId(c, a)) => [(*c, a.clone())].into(),
                    None if obj_counter.is_some() => BTreeSet::new(),
                    None => self
                        .doc
                        .get_all_at(&obj, key.as_str(), self.change.deps())
                        .unwrap_or_default()
                        .into_iter()
                        .filter_map(|(_, id)| match id {
                            ObjId::Id(c, a, _) => Some((c, a)),
                            ObjId::Root => None,
                        })
                        .collect(),
                };
            let named: BTreeSet<(u64, ActorId)> =
                op.pred.iter().map(|OpId(c, a)| (*c, a.clone())).collect();
            if named != expected {
                return Err(self.malformed(format!(
                    "it overwrites {} without naming exactly the values its writer could see",
                    self.describe(&place, key)
                )));
            }
            self.last_write.insert((obj.clone(), key.clone()), my_id.clone());
        } else if op.insert && !op.pred.is_empty() {
            return Err(self.malformed("an inserted list element names values it overwrites"));
        }
        // 2 and 3. Ownership and values.
        match self.writer {
            Writer::Device { .. } => self.device_op(&place, key.as_deref(), op, &obj, my_id),
            Writer::Reviewer { role, .. } => {
                let role = role.clone();
                self.reviewer_op(&role, &place, key.as_deref(), op, &obj, my_id)
            }
        }
    }

    fn describe(&self, place: &Place, key: &str) -> String {
        match place {
            Place::Root => key.to_string(),
            Place::Tasks => format!("tasks/{key}"),
            Place::Task(id) => format!("tasks/{id}/{key}"),
            Place::Notes(id) => format!("tasks/{id}/notes"),
            Place::Note(id) => format!("a note of tasks/{id}: {key}"),
            Place::Review(id) => format!("tasks/{id}/review/{key}"),
            Place::Seen(id) => format!("tasks/{id}/review/seen/{key}"),
            Place::Elsewhere(path) => format!("{path}/{key}"),
        }
    }

    fn verb(op: &automerge::legacy::Op) -> &'static str {
        match op.action {
            OpType::Delete => "delete",
            _ => "write",
        }
    }

    fn create(&mut self, my_id: &OpId, place: Place, parent: Option<ObjId>) {
        self.created.insert(
            my_id.0,
            Created { place, parent, values: HashMap::new(), objects: HashSet::new() },
        );
    }

    fn record(&mut self, obj_counter: u64, key: &str, op: &automerge::legacy::Op) {
        if let Some(created) = self.created.get_mut(&obj_counter) {
            match &op.action {
                OpType::Put(value) => {
                    created.values.insert(key.to_string(), value.clone());
                }
                OpType::Make(_) => {
                    created.objects.insert(key.to_string());
                }
                _ => {}
            }
        }
    }

    fn created_here(&self, obj: &ObjId) -> Option<u64> {
        match obj {
            ObjId::Id(counter, actor, _) if actor == self.actor() && *counter >= self.start_op => {
                Some(*counter).filter(|c| self.created.contains_key(c))
            }
            _ => None,
        }
    }

    fn device_op(
        &mut self,
        place: &Place,
        key: Option<&str>,
        op: &automerge::legacy::Op,
        obj: &ObjId,
        my_id: OpId,
    ) -> Result<(), Refusal> {
        let verb = Self::verb(op);
        match (place, key) {
            (Place::Root, Some(key)) => Err(self.deny(
                format!("{verb} {key}"),
                "the document's root is written once, when the document is created",
            )),
            (Place::Tasks, Some(id)) => {
                let path = format!("tasks/{id}");
                match op.action {
                    OpType::Delete => {
                        return Err(self.deny(format!("delete {path}"), "nobody deletes a task"));
                    }
                    OpType::Make(ObjType::Map) if op.pred.is_empty() => {}
                    OpType::Make(_) | OpType::Put(_) if !op.pred.is_empty() => {
                        return Err(self.deny(format!("replace {path}"), "nobody replaces a task"));
                    }
                    _ => return Err(invalid(&path, "a task must be a map")),
                }
                if !is_key(id) {
                    return Err(invalid(
                        &path,
                        "a task id must be 1 to 40 characters of a-z, 0-9 and '-'",
                    ));
                }
                if self.policy.template_keys.contains(id) {
                    return Err(self.deny(
                        format!("create {path}"),
                        "the id belongs to a template task, and this is not that task as any \
                         edition of the standard published by the district makes it",
                    ));
                }
                let tasks = obj.clone();
                if self.doc.get_all(&tasks, id).map(|v| v.len()).unwrap_or(0) > 1 {
                    return Err(self.deny(
                        format!("create {path}"),
                        "a task with this id exists already, and nobody replaces a task",
                    ));
                }
                self.create(&my_id, Place::Task(id.to_string()), None);
                Ok(())
            }
            (Place::Task(id), Some(field)) => {
                let path = format!("tasks/{id}/{field}");
                if let OpType::Delete = op.action {
                    return Err(
                        self.deny(format!("delete {path}"), "nobody deletes a task's fields")
                    );
                }
                if field == "review" {
                    return Err(self.deny(format!("{verb} {path}"), "only the district reviews"));
                }
                if let Some(counter) = self.created_here(obj) {
                    // A new task of the community's own: every field, once.
                    match (field, &op.action) {
                        ("notes", OpType::Make(ObjType::List)) => {
                            self.create(&my_id, Place::Notes(id.clone()), None);
                        }
                        ("veto", OpType::Put(ScalarValue::Boolean(false))) => {}
                        ("veto", _) => {
                            return Err(invalid(
                                &path,
                                "the community's own tasks are never veto tasks",
                            ));
                        }
                        ("template", OpType::Put(ScalarValue::Str(s))) if s.is_empty() => {}
                        ("template", _) => {
                            return Err(self.deny(
                                format!("write {path}"),
                                "only the standard's template makes template tasks",
                            ));
                        }
                        (field, OpType::Put(value)) => self.task_value(&path, field, value)?,
                        _ => return Err(invalid(&path, "is not a field of the schema")),
                    }
                    self.record(counter, field, op);
                    return Ok(());
                }
                match field {
                    "status" | "progress" | "owner" | "due" => {}
                    "star" | "points" | "title" => {
                        if self.is_template_task(obj) {
                            return Err(self.deny(
                                format!("{verb} {path}"),
                                "the standard owns the star, points, veto and title of template tasks",
                            ));
                        }
                    }
                    "veto" | "template" => {
                        return Err(self.deny(
                            format!("{verb} {path}"),
                            "it is set once, when the task is created",
                        ));
                    }
                    "notes" => {
                        return Err(
                            self.deny(format!("replace {path}"), "evidence notes are append-only")
                        );
                    }
                    _ => return Err(invalid(&path, "is not a field of the schema")),
                }
                match &op.action {
                    OpType::Put(value) => self.task_value(&path, field, value),
                    _ => Err(invalid(&path, "must be a plain value")),
                }
            }
            (Place::Notes(id), None) => {
                let path = format!("tasks/{id}/notes");
                if op.insert && matches!(op.action, OpType::Make(ObjType::Map)) {
                    self.create(&my_id, Place::Note(id.clone()), None);
                    Ok(())
                } else if op.insert {
                    Err(invalid(&path, "a note must be a map"))
                } else {
                    Err(self.deny(
                        format!("{verb} a note of tasks/{id}"),
                        "evidence notes are never deleted or rewritten; withdraw a note instead",
                    ))
                }
            }
            (Place::Note(id), Some(field)) => {
                let path = format!("tasks/{id}/notes/{field}");
                if let OpType::Delete = op.action {
                    return Err(self.deny(
                        format!("delete {path}"),
                        "evidence notes are never deleted or rewritten",
                    ));
                }
                let OpType::Put(value) = &op.action else {
                    return Err(invalid(&path, "must be a plain value"));
                };
                if let Some(counter) = self.created_here(obj) {
                    match field {
                        "text" => {
                            // A note that carries a file may have an empty caption.
                            let carries_file = self.change_writes(obj, "file_hash");
                            text(&path, value, !carries_file)?
                        }
                        "by" => text(&path, value, false)?,
                        "at" => timestamp(&path, value)?,
                        "file_hash" | "file_name" | "file_type" | "file_size" => {
                            file_field(&path, field, value)?;
                            // A file reference comes whole, in the change that makes the note.
                            for other in ["file_hash", "file_name", "file_type", "file_size"] {
                                if other != field && !self.change_writes(obj, other) {
                                    return Err(invalid(
                                        &path,
                                        "a file reference sets file_hash, file_name, file_type and file_size together",
                                    ));
                                }
                            }
                        }
                        _ => return Err(invalid(&path, "is not a field of a new note")),
                    }
                    self.record(counter, field, op);
                    return Ok(());
                }
                match field {
                    "withdrawn_by" | "withdrawn_at" => {
                        if !op.pred.is_empty() {
                            return Err(
                                self.deny(format!("rewrite {path}"), "a note is withdrawn once")
                            );
                        }
                        if field == "withdrawn_by" {
                            text(&path, value, false)?;
                        } else {
                            timestamp(&path, value)?;
                        }
                        // Both halves of a withdrawal come in the same change.
                        let other =
                            if field == "withdrawn_by" { "withdrawn_at" } else { "withdrawn_by" };
                        let pair = self.change_writes(obj, other);
                        if !pair {
                            return Err(invalid(
                                &path,
                                "a withdrawal sets withdrawn_by and withdrawn_at together",
                            ));
                        }
                        Ok(())
                    }
                    "text" | "by" | "at" | "file_hash" | "file_name" | "file_type"
                    | "file_size" => {
                        Err(self.deny(format!("rewrite {path}"), "evidence notes are written once"))
                    }
                    _ => Err(invalid(&path, "is not a field of a note")),
                }
            }
            (Place::Review(id) | Place::Seen(id), _) => {
                Err(self.deny(format!("{verb} tasks/{id}/review"), "only the district reviews"))
            }
            (place, key) => Err(self.deny(
                format!("{verb} {}", self.describe(place, key.unwrap_or(""))),
                "it is not a field a community writes",
            )),
        }
    }

    /// Whether this change also puts `key` into `obj` (anywhere in it).
    fn change_writes(&self, obj: &ObjId, key: &str) -> bool {
        self.last_write.contains_key(&(obj.clone(), key.to_string()))
            || self.future_writes(obj, key)
    }

    fn future_writes(&self, obj: &ObjId, key: &str) -> bool {
        let ObjId::Id(counter, actor, _) = obj else { return false };
        self.expanded.operations.iter().any(|op| {
            matches!(&op.obj, ObjectId::Id(OpId(c, a)) if c == counter && a == actor)
                && matches!(&op.key, Key::Map(k) if k.as_str() == key)
        })
    }

    fn is_template_task(&self, task: &ObjId) -> bool {
        matches!(
            self.doc.get_at(task, "template", self.change.deps()),
            Ok(Some((Value::Scalar(s), _))) if matches!(s.as_ref(), ScalarValue::Str(t) if !t.is_empty())
        )
    }

    fn task_value(&self, path: &str, field: &str, value: &ScalarValue) -> Result<(), Refusal> {
        match field {
            "star" => match value {
                ScalarValue::Str(star) if self.policy.kind.star(star).is_some() => Ok(()),
                _ => Err(invalid(
                    path,
                    format!(
                        "must be a star of this kind ({})",
                        self.policy.kind.star_keys().join(", ")
                    ),
                )),
            },
            "title" => text(path, value, true),
            "owner" => text(path, value, false),
            "points" => int(path, value, 1..=100),
            "progress" => int(path, value, 0..=100),
            "status" => status(path, value),
            "due" => due(path, value),
            _ => Err(invalid(path, "is not a field of the schema")),
        }
    }

    fn reviewer_op(
        &mut self,
        role: &Role,
        place: &Place,
        key: Option<&str>,
        op: &automerge::legacy::Op,
        obj: &ObjId,
        my_id: OpId,
    ) -> Result<(), Refusal> {
        let verb = Self::verb(op);
        match (place, key) {
            (Place::Task(id), Some("review")) if self.created_here(obj).is_none() => {
                let path = format!("tasks/{id}/review");
                match op.action {
                    OpType::Make(ObjType::Map) => {}
                    OpType::Delete => {
                        return Err(self.deny(
                            format!("delete {path}"),
                            "a review is never deleted; reopen it with a comment",
                        ));
                    }
                    _ => return Err(invalid(&path, "a review must be a map")),
                }
                if let Role::TaskForce(star) = role {
                    let task_star = match self.doc.get_at(obj, "star", self.change.deps()) {
                        Ok(Some((Value::Scalar(s), _))) => match s.as_ref() {
                            ScalarValue::Str(s) => s.to_string(),
                            _ => String::new(),
                        },
                        _ => String::new(),
                    };
                    if task_star != *star {
                        return Err(self.deny(
                            format!("review {path}"),
                            &format!(
                                "the task is of star {task_star}, and {role} reviews only its own star's tasks"
                            ),
                        ));
                    }
                }
                self.create(&my_id, Place::Review(id.clone()), Some(obj.clone()));
                Ok(())
            }
            (Place::Review(id), Some(field)) if self.created_here(obj).is_some() => {
                let path = format!("tasks/{id}/review/{field}");
                let counter = self.created_here(obj).unwrap_or_default();
                match (field, &op.action) {
                    ("seen", OpType::Make(ObjType::Map)) => {
                        let parent = self.created.get(&counter).and_then(|c| c.parent.clone());
                        self.create(&my_id, Place::Seen(id.clone()), parent);
                    }
                    ("verdict", OpType::Put(value)) => match value {
                        ScalarValue::Str(v)
                            if matches!(v.as_str(), "accepted" | "rejected" | "reopened") => {}
                        _ => return Err(invalid(&path, "must be accepted, rejected or reopened")),
                    },
                    ("awarded", OpType::Put(value)) => int(&path, value, 0..=100)?,
                    ("comment", OpType::Put(value)) => text(&path, value, false)?,
                    ("reviewer", OpType::Put(value)) => text(&path, value, true)?,
                    ("at", OpType::Put(value)) => timestamp(&path, value)?,
                    ("override", OpType::Put(ScalarValue::Boolean(_))) => {}
                    _ => return Err(invalid(&path, "is not a field of a review")),
                }
                self.record(counter, field, op);
                Ok(())
            }
            (Place::Seen(id), Some(field)) if self.created_here(obj).is_some() => {
                let path = format!("tasks/{id}/review/seen/{field}");
                let counter = self.created_here(obj).unwrap_or_default();
                let OpType::Put(value) = &op.action else {
                    return Err(invalid(&path, "must be a plain value"));
                };
                match field {
                    "star" | "title" | "owner" => text(&path, value, false)?,
                    "points" | "progress" | "notes" | "withdrawn" => {
                        int(&path, value, 0..=i64::from(u32::MAX))?
                    }
                    "status" => status(&path, value)?,
                    "due" => due(&path, value)?,
                    _ => return Err(invalid(&path, "is not a field of what a review saw")),
                }
                self.record(counter, field, op);
                Ok(())
            }
            (place, key) => Err(self.deny(
                format!("{verb} {}", self.describe(place, key.unwrap_or(""))),
                "a reviewer writes only reviews, whole, one per change",
            )),
        }
    }

    /// Checks what the change created is complete and, for a review, honest.
    fn finish(&mut self) -> Result<(), Refusal> {
        let created: Vec<&Created> = self.created.values().collect();
        for item in &created {
            match &item.place {
                Place::Task(id) => {
                    let missing: Vec<&str> = [
                        "star", "title", "points", "status", "progress", "owner", "due", "veto",
                        "template",
                    ]
                    .into_iter()
                    .filter(|f| !item.values.contains_key(*f))
                    .chain((!item.objects.contains("notes")).then_some("notes"))
                    .collect();
                    if !missing.is_empty() {
                        return Err(invalid(
                            &format!("tasks/{id}"),
                            format!(
                                "a new task needs every field; missing: {}",
                                missing.join(", ")
                            ),
                        ));
                    }
                }
                Place::Note(id)
                    if ["text", "by", "at"].iter().any(|f| !item.values.contains_key(*f)) =>
                {
                    return Err(invalid(
                        &format!("tasks/{id}/notes"),
                        "a new note needs its text, who wrote it and when",
                    ));
                }
                Place::Review(id) => self.finish_review(id, item)?,
                _ => {}
            }
        }
        Ok(())
    }

    fn finish_review(&self, id: &str, review: &Created) -> Result<(), Refusal> {
        let path = format!("tasks/{id}/review");
        for field in ["verdict", "comment", "reviewer", "at"] {
            if !review.values.contains_key(field) {
                return Err(invalid(&path, format!("a review needs its {field}")));
            }
        }
        let verdict = match review.values.get("verdict") {
            Some(ScalarValue::Str(v)) => v.to_string(),
            _ => String::new(),
        };
        let comment = match review.values.get("comment") {
            Some(ScalarValue::Str(c)) => c.trim().to_string(),
            _ => String::new(),
        };
        if verdict != "accepted" && review.values.contains_key("awarded") {
            return Err(invalid(&path, "points are awarded only with an acceptance"));
        }
        if verdict != "accepted" && comment.is_empty() {
            return Err(invalid(&path, format!("a {verdict} review needs a comment saying why")));
        }
        if verdict == "reopened" {
            return Ok(());
        }
        let Some(seen) =
            self.created.values().find(|c| matches!(&c.place, Place::Seen(t) if t == id))
        else {
            return Err(invalid(&path, "a verdict pins what the reviewer saw (seen)"));
        };
        let Some(task_obj) = &review.parent else {
            return Err(invalid(&path, "the reviewed task is unknown"));
        };
        let actual = self.task_at_deps(task_obj);
        for (field, value) in &actual {
            if seen.values.get(*field) != Some(value)
                && !same_number(seen.values.get(*field), value)
            {
                return Err(Refusal::Invalid {
                    path: format!("{path}/seen/{field}"),
                    problem: "is not what the task held when it was reviewed".into(),
                });
            }
        }
        if seen.values.len() != actual.len() {
            return Err(invalid(
                &format!("{path}/seen"),
                "must pin every field of the task it judged",
            ));
        }
        let seen_points = number(seen.values.get("points")).unwrap_or(0);
        if let Some(awarded) = number(review.values.get("awarded"))
            && awarded > seen_points
        {
            return Err(invalid(
                &format!("{path}/awarded"),
                format!("{awarded} is more than the task's {seen_points} points"),
            ));
        }
        if verdict == "accepted" {
            let done = matches!(seen.values.get("status"), Some(ScalarValue::Str(s)) if s.as_str() == "done")
                || number(seen.values.get("progress")).unwrap_or(0) >= 100;
            let overridden =
                matches!(review.values.get("override"), Some(ScalarValue::Boolean(true)));
            if !done && !overridden {
                return Err(invalid(
                    &path,
                    "accepting a task that is not done needs an explicit override",
                ));
            }
        }
        Ok(())
    }

    /// The task's pinnable values as its reviewer could see them.
    fn task_at_deps(&self, task: &ObjId) -> Vec<(&'static str, ScalarValue)> {
        let deps = self.change.deps();
        let get = |field: &str| -> ScalarValue {
            match self.doc.get_at(task, field, deps) {
                Ok(Some((Value::Scalar(s), _))) => s.into_owned(),
                _ => ScalarValue::Null,
            }
        };
        let mut values = vec![
            ("star", get("star")),
            ("points", get("points")),
            ("status", get("status")),
            ("progress", get("progress")),
            ("title", get("title")),
            ("owner", get("owner")),
            ("due", get("due")),
        ];
        let (notes, withdrawn) = match self.doc.get_at(task, "notes", deps) {
            Ok(Some((Value::Object(ObjType::List), list))) => {
                let mut len: usize = 0;
                let mut withdrawn: usize = 0;
                for item in self.doc.list_range_at(&list, .., deps) {
                    len += 1;
                    let note = item.id();
                    if matches!(self.doc.get_at(&note, "withdrawn_at", deps), Ok(Some(_)))
                        || matches!(self.doc.get_at(&note, "withdrawn_by", deps), Ok(Some(_)))
                    {
                        withdrawn += 1;
                    }
                }
                (len, withdrawn)
            }
            _ => (0, 0),
        };
        values.push(("notes", ScalarValue::Int(i64::try_from(notes).unwrap_or(i64::MAX))));
        values.push(("withdrawn", ScalarValue::Int(i64::try_from(withdrawn).unwrap_or(i64::MAX))));
        values
    }
}

fn number(value: Option<&ScalarValue>) -> Option<i64> {
    match value {
        Some(ScalarValue::Int(i)) => Some(*i),
        Some(ScalarValue::Uint(u)) => i64::try_from(*u).ok(),
        _ => None,
    }
}

fn same_number(a: Option<&ScalarValue>, b: &ScalarValue) -> bool {
    matches!((number(a), number(Some(b))), (Some(x), Some(y)) if x == y)
}

fn text(path: &str, value: &ScalarValue, required: bool) -> Result<(), Refusal> {
    match value {
        ScalarValue::Str(s) if s.chars().count() > MAX_TEXT_CHARS => {
            Err(invalid(path, format!("is longer than {MAX_TEXT_CHARS} characters")))
        }
        ScalarValue::Str(s) if required && s.trim().is_empty() => {
            Err(invalid(path, "must not be empty"))
        }
        ScalarValue::Str(_) => Ok(()),
        _ => Err(invalid(path, "must be text")),
    }
}

fn int(
    path: &str,
    value: &ScalarValue,
    range: std::ops::RangeInclusive<i64>,
) -> Result<(), Refusal> {
    match number(Some(value)) {
        Some(n) if range.contains(&n) => Ok(()),
        Some(n) => Err(invalid(path, format!("{n} is not in {}..={}", range.start(), range.end()))),
        None => Err(invalid(path, "must be a whole number")),
    }
}

fn status(path: &str, value: &ScalarValue) -> Result<(), Refusal> {
    match value {
        ScalarValue::Str(s) if s.parse::<TaskStatus>().is_ok() => Ok(()),
        _ => Err(invalid(path, "must be one of todo, doing, done, blocked, failed")),
    }
}

fn due(path: &str, value: &ScalarValue) -> Result<(), Refusal> {
    match value {
        ScalarValue::Str(s) if s.is_empty() || NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok() => {
            Ok(())
        }
        _ => Err(invalid(path, "must be a date (YYYY-MM-DD) or empty")),
    }
}

/// One field of a note's file reference, checked as [`crate::FileRef::problem`] does.
fn file_field(path: &str, field: &str, value: &ScalarValue) -> Result<(), Refusal> {
    let sample = crate::FileRef {
        hash: "0".repeat(64),
        name: "x".into(),
        mime: crate::FILE_TYPES[0].into(),
        size: 1,
    };
    let probe = match (field, value) {
        ("file_hash", ScalarValue::Str(s)) => crate::FileRef { hash: s.to_string(), ..sample },
        ("file_name", ScalarValue::Str(s)) => crate::FileRef { name: s.to_string(), ..sample },
        ("file_type", ScalarValue::Str(s)) => crate::FileRef { mime: s.to_string(), ..sample },
        ("file_size", ScalarValue::Int(n)) if *n > 0 => {
            crate::FileRef { size: u64::try_from(*n).unwrap_or(u64::MAX), ..sample }
        }
        ("file_size", _) => return Err(invalid(path, "must be a positive whole number")),
        _ => return Err(invalid(path, "must be text")),
    };
    match probe.problem() {
        Some(problem) => Err(invalid(path, problem)),
        None => Ok(()),
    }
}

fn timestamp(path: &str, value: &ScalarValue) -> Result<(), Refusal> {
    match value {
        ScalarValue::Timestamp(_) => Ok(()),
        _ => Err(invalid(path, "must be a timestamp")),
    }
}
