//! The shapes that cross the NIF boundary, typed once: each is an Elixir struct of
//! `lib/snakebridge/native/types.ex` (or an atom) mirrored here with rustler's derives, so
//! a NIF takes one struct instead of a dozen positional arguments, an operation or codec
//! never crosses as a bare integer, and a key Elixir does not define cannot be passed.

use rustler::{Atom, Binary, NifStruct, NifTaggedEnum, NifUnitEnum, ResourceArc, Term};

use snakebridge_core::plan;
use snakebridge_core::{proto, Op};

use crate::session::SessionResource;

/// A codec: `:msgpack` or `:json`.
#[derive(NifUnitEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Codec {
    Msgpack,
    Json,
}

impl From<Codec> for proto::Codec {
    fn from(codec: Codec) -> proto::Codec {
        match codec {
            Codec::Msgpack => proto::Codec::Msgpack,
            Codec::Json => proto::Codec::Json,
        }
    }
}

/// What a call does: `:call` a function, `:call_method` of `args[0]`, `:get_attr`,
/// `:set_attr`.
#[derive(NifUnitEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Operation {
    Call,
    CallMethod,
    GetAttr,
    SetAttr,
}

impl From<Operation> for Op {
    fn from(op: Operation) -> Op {
        match op {
            Operation::Call => Op::Call,
            Operation::CallMethod => Op::CallMethod,
            Operation::GetAttr => Op::GetAttr,
            Operation::SetAttr => Op::SetAttr,
        }
    }
}

/// `%SnakeBridge.Native.Encoding{}`: how a call's values are encoded.
#[derive(NifStruct, Clone, Copy, Debug)]
#[module = "SnakeBridge.Native.Encoding"]
pub(crate) struct Encoding {
    pub args: Codec,
    pub result: Codec,
    pub tensors_as_lists: bool,
}

/// `%SnakeBridge.Native.Call{}`: one call, stream or broadcast to make.
#[derive(NifStruct)]
#[module = "SnakeBridge.Native.Call"]
pub(crate) struct Call<'a> {
    /// The pool's name, recorded in the object references of the result.
    pub pool_name: Atom,
    pub op: Operation,
    /// Dotted path of the callable, or the method or attribute name.
    pub target: String,
    pub args: Term<'a>,
    pub kwargs: Term<'a>,
    /// `nil`: no deadline.
    pub timeout_ms: Option<u64>,
    /// Whether the result stays in Python as a reference whatever it is.
    pub as_ref: bool,
    pub session: Option<ResourceArc<SessionResource>>,
    /// `{integration, ttl_ms}` (0: no expiry) for a call the result cache may answer.
    pub cache: Option<(String, u64)>,
    pub encoding: Encoding,
}

/// What a worker does about a call that hung: `:replace` or `:keep`.
#[derive(NifUnitEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OnHang {
    Replace,
    Keep,
}

/// `%SnakeBridge.Native.PoolOptions{}`: a pool to start, as `SnakeBridge.Pool` resolved
/// and validated its options.
#[derive(NifStruct)]
#[module = "SnakeBridge.Native.PoolOptions"]
pub(crate) struct PoolOptions<'a> {
    pub name: Atom,
    pub python: String,
    /// SnakeBridge's `priv` directory, holding the worker's Python package and extension.
    pub priv_dir: String,
    pub strict: bool,
    pub start_hint: Option<String>,
    pub size: usize,
    pub threads: u32,
    pub startup_timeout_ms: u64,
    pub max_message_size: usize,
    pub max_payload_size: usize,
    /// The smallest buffer that crosses through shared memory; `nil`: none does.
    pub shared_memory: Option<usize>,
    /// `nil`: any module.
    pub allowed_modules: Option<Vec<String>>,
    pub secrets: Vec<String>,
    pub max_queue: usize,
    pub hang_grace_ms: u64,
    pub on_hang: OnHang,
    pub env: Vec<(String, String)>,
    pub python_path: Vec<String>,
    /// `[{target, args, kwargs}]`, run by every worker at start.
    pub init: Vec<(String, Term<'a>, Term<'a>)>,
}

/// `%SnakeBridge.Native.Describe{}`: a library to introspect and where to keep its
/// descriptor.
#[derive(NifStruct)]
#[module = "SnakeBridge.Native.Describe"]
pub(crate) struct Describe<'a> {
    /// The descriptor cache's directory.
    pub dir: String,
    pub integration: String,
    pub module_path: String,
    pub submodules: Vec<String>,
    pub depth: u32,
    pub exclude_patterns: Vec<String>,
    /// The integration's config, as deterministic `term_to_binary`, for the cache key.
    pub config: Binary<'a>,
    /// Introspect even when the worker could answer from what it cached.
    pub force: bool,
    pub timeout_ms: u64,
}

/// `%SnakeBridge.Generator.ModulePlan{}`: one generated module (see
/// `snakebridge_core::plan::ModulePlan`).
#[derive(NifStruct, Debug)]
#[module = "SnakeBridge.Generator.ModulePlan"]
pub(crate) struct ModulePlan {
    /// The module's name (`module` is a name rustler's derive takes for itself).
    pub name: Atom,
    pub moduledoc: String,
    pub kind: ModuleKind,
    pub python: String,
    pub integration: String,
    pub functions: Vec<FunctionPlan>,
}

/// `:functions` or `:class`.
#[derive(NifUnitEnum, Clone, Copy, Debug)]
pub(crate) enum ModuleKind {
    Functions,
    Class,
}

/// `:function`, `:constructor`, `:instance`, `:method`, `:getter` or `:setter`.
#[derive(NifUnitEnum, Clone, Copy, Debug)]
pub(crate) enum FunctionKind {
    Function,
    Constructor,
    Instance,
    Method,
    Getter,
    Setter,
}

/// `:infinity`, or `{:ms, milliseconds}`.
#[derive(NifTaggedEnum, Clone, Copy, Debug)]
pub(crate) enum Timeout {
    Ms(u64),
    Infinity,
}

/// `:forever`, or `{:ttl_ms, milliseconds}`.
#[derive(NifTaggedEnum, Clone, Copy, Debug)]
pub(crate) enum CachePolicy {
    Forever,
    TtlMs(u64),
}

/// `%SnakeBridge.Generator.FunctionPlan{}`: one generated function.
#[derive(NifStruct, Debug)]
#[module = "SnakeBridge.Generator.FunctionPlan"]
pub(crate) struct FunctionPlan {
    pub name: Atom,
    pub kind: FunctionKind,
    pub target: String,
    pub args: Vec<Atom>,
    pub arg_types: Vec<String>,
    pub varargs: Option<Atom>,
    pub return_type: String,
    pub doc: String,
    pub streaming: bool,
    pub timeout: Option<Timeout>,
    pub idempotent: bool,
    pub cache: Option<CachePolicy>,
}

impl ModulePlan {
    /// The core's plan, with its names as atoms (they are the generated code's names).
    pub(crate) fn new(env: rustler::Env<'_>, plan: plan::ModulePlan) -> rustler::NifResult<Self> {
        Ok(ModulePlan {
            name: Atom::from_str(env, &plan.module)?,
            moduledoc: plan.moduledoc,
            kind: match plan.kind {
                plan::ModuleKind::Functions => ModuleKind::Functions,
                plan::ModuleKind::Class => ModuleKind::Class,
            },
            python: plan.python,
            integration: plan.integration,
            functions: plan
                .functions
                .into_iter()
                .map(|f| FunctionPlan::new(env, f))
                .collect::<rustler::NifResult<_>>()?,
        })
    }
}

impl FunctionPlan {
    fn new(env: rustler::Env<'_>, f: plan::FunctionPlan) -> rustler::NifResult<Self> {
        let atom = |name: &str| Atom::from_str(env, name);
        Ok(FunctionPlan {
            name: atom(&f.name)?,
            kind: match f.kind {
                plan::FunctionKind::Function => FunctionKind::Function,
                plan::FunctionKind::Constructor => FunctionKind::Constructor,
                plan::FunctionKind::Instance => FunctionKind::Instance,
                plan::FunctionKind::Method => FunctionKind::Method,
                plan::FunctionKind::Getter => FunctionKind::Getter,
                plan::FunctionKind::Setter => FunctionKind::Setter,
            },
            target: f.target,
            args: f
                .args
                .iter()
                .map(|a| atom(a))
                .collect::<rustler::NifResult<_>>()?,
            arg_types: f.arg_types,
            varargs: f.varargs.as_deref().map(atom).transpose()?,
            return_type: f.return_type,
            doc: f.doc,
            streaming: f.streaming,
            timeout: f.timeout.map(|t| match t {
                plan::Timeout::Ms(ms) => Timeout::Ms(ms),
                plan::Timeout::Infinity => Timeout::Infinity,
            }),
            idempotent: f.idempotent,
            cache: f.cache.map(|c| match c {
                plan::CachePolicy::Forever => CachePolicy::Forever,
                plan::CachePolicy::TtlMs(ms) => CachePolicy::TtlMs(ms),
            }),
        })
    }
}
