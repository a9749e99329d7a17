//! The shapes that cross the NIF boundary, typed once: each is an Elixir struct of
//! `lib/snakebridge/native/types.ex` or `lib/snakebridge/descriptor.ex` (or an atom, or a
//! map with atom keys) mirrored here with rustler's derives, so
//! a NIF takes one struct instead of a dozen positional arguments, an operation or codec
//! never crosses as a bare integer, and a key Elixir does not define cannot be passed.

use rustler::{
    Atom, Binary, Decoder, Encoder, Env, NifMap, NifResult, NifStruct, NifTaggedEnum, NifUnitEnum,
    ResourceArc, Term,
};

use snakebridge_core::descriptor;
use snakebridge_core::plan;
use snakebridge_core::stats::{Snapshot, LATENCY_BUCKETS_US};
use snakebridge_core::worker;
use snakebridge_core::{proto, Op};

use crate::session::SessionResource;
use crate::terms;

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
    pub max_result_size: usize,
    pub max_elements: usize,
    /// `"local"` or `"grpc"` (see [`snakebridge_core::transport::Carrier`]).
    pub carrier: String,
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
    pub(crate) fn new(env: Env<'_>, plan: plan::ModulePlan) -> NifResult<Self> {
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
                .collect::<NifResult<_>>()?,
        })
    }
}

impl FunctionPlan {
    fn new(env: Env<'_>, f: plan::FunctionPlan) -> NifResult<Self> {
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
            args: f.args.iter().map(|a| atom(a)).collect::<NifResult<_>>()?,
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

/// `%SnakeBridge.Descriptor.Entry{}`: a cached descriptor with what identifies it (see
/// `snakebridge_core::descriptor::Entry`).
#[derive(NifStruct, Debug)]
#[module = "SnakeBridge.Descriptor.Entry"]
pub(crate) struct DescriptorEntry {
    pub schema_version: u32,
    pub integration: String,
    pub config_hash: String,
    pub request_key: String,
    pub cache_key: String,
    pub library_version: String,
    pub python_version: String,
    pub descriptor_hash: String,
    pub descriptor: Descriptor,
}

/// `%SnakeBridge.Descriptor{}`: what introspection learned (the proto's
/// `DescribeLibraryResponse`).
#[derive(NifStruct, Debug)]
#[module = "SnakeBridge.Descriptor"]
pub(crate) struct Descriptor {
    pub version: String,
    pub classes: Keyed<ClassDescriptor>,
    pub functions: Keyed<FunctionDescriptor>,
    pub warnings: Vec<String>,
}

/// `%SnakeBridge.Descriptor.Class{}`.
#[derive(NifStruct, Debug)]
#[module = "SnakeBridge.Descriptor.Class"]
pub(crate) struct ClassDescriptor {
    pub name: String,
    pub python_path: String,
    pub docstring: String,
    pub bases: Vec<String>,
    pub constructor: Option<FunctionDescriptor>,
    pub methods: Keyed<FunctionDescriptor>,
    pub properties: Vec<PropertyDescriptor>,
}

/// `%SnakeBridge.Descriptor.Function{}`.
#[derive(NifStruct, Debug)]
#[module = "SnakeBridge.Descriptor.Function"]
pub(crate) struct FunctionDescriptor {
    pub name: String,
    pub python_path: String,
    pub docstring: String,
    pub parameters: Vec<ParameterDescriptor>,
    pub return_type: Option<TypeDescriptor>,
    pub is_generator: bool,
    pub is_async: bool,
    pub is_async_generator: bool,
    pub kind: Atom,
    pub signature: String,
}

/// `%SnakeBridge.Descriptor.Parameter{}`.
#[derive(NifStruct, Debug)]
#[module = "SnakeBridge.Descriptor.Parameter"]
pub(crate) struct ParameterDescriptor {
    pub name: String,
    pub kind: Atom,
    pub required: bool,
    pub default_repr: Option<String>,
    pub annotation: Option<TypeDescriptor>,
}

/// `%SnakeBridge.Descriptor.Property{}`.
#[derive(NifStruct, Debug)]
#[module = "SnakeBridge.Descriptor.Property"]
pub(crate) struct PropertyDescriptor {
    pub name: String,
    pub readonly: bool,
    pub r#type: Option<TypeDescriptor>,
    pub docstring: String,
}

/// `%SnakeBridge.Descriptor.Type{}`.
#[derive(NifStruct, Debug)]
#[module = "SnakeBridge.Descriptor.Type"]
pub(crate) struct TypeDescriptor {
    pub kind: Atom,
    pub name: String,
    pub args: Vec<TypeDescriptor>,
    pub literals: Vec<String>,
}

/// A map with string keys, encoded with `terms::map_from`: descriptors are sent from the
/// core's threads, where the VM cannot sort a large map built from arrays.
#[derive(Debug)]
pub(crate) struct Keyed<V>(Vec<(String, V)>);

impl<V> FromIterator<(String, V)> for Keyed<V> {
    fn from_iter<I: IntoIterator<Item = (String, V)>>(iter: I) -> Self {
        Keyed(iter.into_iter().collect())
    }
}

impl<V: Encoder> Encoder for Keyed<V> {
    fn encode<'a>(&self, env: Env<'a>) -> Term<'a> {
        let keys: Vec<Term<'a>> = self.0.iter().map(|(k, _)| k.encode(env)).collect();
        let values: Vec<Term<'a>> = self.0.iter().map(|(_, v)| v.encode(env)).collect();
        terms::map_from(env, &keys, &values)
    }
}

impl<'a, V: Decoder<'a>> Decoder<'a> for Keyed<V> {
    fn decode(term: Term<'a>) -> NifResult<Self> {
        term.decode::<std::collections::HashMap<String, V>>()
            .map(|map| map.into_iter().collect())
    }
}

/// An enum value's proto name as a lowercase atom (`POSITIONAL_ONLY` -> `:positional_only`,
/// `KIND_CLASSMETHOD` -> `:classmethod`): the proto owns the names.
fn kind_atom(env: Env<'_>, proto_name: &str) -> NifResult<Atom> {
    let name = proto_name.trim_start_matches("KIND_").to_ascii_lowercase();
    Atom::from_str(env, &name)
}

impl DescriptorEntry {
    /// The core's entry, for Elixir.
    pub(crate) fn new(env: Env<'_>, entry: &descriptor::Entry) -> NifResult<Self> {
        Ok(DescriptorEntry {
            schema_version: entry.schema_version,
            integration: entry.integration.clone(),
            config_hash: entry.config_hash.clone(),
            request_key: entry.request_key.clone(),
            cache_key: entry.cache_key.clone(),
            library_version: entry.library_version.clone(),
            python_version: entry.python_version.clone(),
            descriptor_hash: entry.descriptor_hash.clone(),
            descriptor: Descriptor::new(env, &entry.descriptor)?,
        })
    }
}

impl Descriptor {
    fn new(env: Env<'_>, d: &proto::DescribeLibraryResponse) -> NifResult<Self> {
        Ok(Descriptor {
            version: d.version.clone(),
            classes: d
                .classes
                .iter()
                .map(|(path, c)| Ok((path.clone(), ClassDescriptor::new(env, c)?)))
                .collect::<NifResult<_>>()?,
            functions: d
                .functions
                .iter()
                .map(|(path, f)| Ok((path.clone(), FunctionDescriptor::new(env, f)?)))
                .collect::<NifResult<_>>()?,
            warnings: d.warnings.clone(),
        })
    }
}

impl ClassDescriptor {
    fn new(env: Env<'_>, c: &proto::ClassDescriptor) -> NifResult<Self> {
        Ok(ClassDescriptor {
            name: c.name.clone(),
            python_path: c.python_path.clone(),
            docstring: c.docstring.clone(),
            bases: c.bases.clone(),
            constructor: c
                .constructor
                .as_ref()
                .map(|f| FunctionDescriptor::new(env, f))
                .transpose()?,
            methods: c
                .methods
                .iter()
                .map(|(name, f)| Ok((name.clone(), FunctionDescriptor::new(env, f)?)))
                .collect::<NifResult<_>>()?,
            properties: c
                .properties
                .iter()
                .map(|p| PropertyDescriptor::new(env, p))
                .collect::<NifResult<_>>()?,
        })
    }
}

impl FunctionDescriptor {
    fn new(env: Env<'_>, f: &proto::FunctionDescriptor) -> NifResult<Self> {
        Ok(FunctionDescriptor {
            name: f.name.clone(),
            python_path: f.python_path.clone(),
            docstring: f.docstring.clone(),
            parameters: f
                .parameters
                .iter()
                .map(|p| ParameterDescriptor::new(env, p))
                .collect::<NifResult<_>>()?,
            return_type: type_of(env, f.return_type.as_ref())?,
            is_generator: f.is_generator,
            is_async: f.is_async,
            is_async_generator: f.is_async_generator,
            kind: kind_atom(env, f.kind().as_str_name())?,
            signature: f.signature.clone(),
        })
    }
}

impl ParameterDescriptor {
    fn new(env: Env<'_>, p: &proto::ParameterDescriptor) -> NifResult<Self> {
        Ok(ParameterDescriptor {
            name: p.name.clone(),
            kind: kind_atom(env, p.kind().as_str_name())?,
            required: p.required,
            default_repr: p.default_repr.clone(),
            annotation: type_of(env, p.annotation.as_ref())?,
        })
    }
}

impl PropertyDescriptor {
    fn new(env: Env<'_>, p: &proto::PropertyDescriptor) -> NifResult<Self> {
        Ok(PropertyDescriptor {
            name: p.name.clone(),
            readonly: p.readonly,
            r#type: type_of(env, p.r#type.as_ref())?,
            docstring: p.docstring.clone(),
        })
    }
}

fn type_of(env: Env<'_>, t: Option<&proto::TypeDescriptor>) -> NifResult<Option<TypeDescriptor>> {
    t.map(|t| TypeDescriptor::new(env, t)).transpose()
}

impl TypeDescriptor {
    fn new(env: Env<'_>, t: &proto::TypeDescriptor) -> NifResult<Self> {
        Ok(TypeDescriptor {
            kind: kind_atom(env, t.kind().as_str_name())?,
            name: t.name.clone(),
            args: t
                .args
                .iter()
                .map(|a| TypeDescriptor::new(env, a))
                .collect::<NifResult<_>>()?,
            literals: t.literals.clone(),
        })
    }
}

/// One live worker of a pool, as `SnakeBridge.Pool.workers/1` reports it.
#[derive(NifMap, Debug)]
pub(crate) struct WorkerInfo {
    pub slot: usize,
    pub pid: u32,
    pub in_flight: usize,
    pub python_version: String,
}

impl From<worker::WorkerInfo> for WorkerInfo {
    fn from(w: worker::WorkerInfo) -> Self {
        WorkerInfo {
            slot: w.slot,
            pid: w.pid,
            in_flight: w.in_flight,
            python_version: w.python_version,
        }
    }
}

/// A pool's counters, as `SnakeBridge.Pool.stats/1` reports them: `latency` is
/// `[{bound_us | :infinity, count}]`, one bucket per bound (see `snakebridge_core::stats`).
#[derive(NifMap, Debug)]
pub(crate) struct PoolStats<'a> {
    pub calls: u64,
    pub errors: u64,
    pub latency: Vec<(Term<'a>, u64)>,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub sessions: u64,
    pub session_calls: u64,
    pub hung_calls: u64,
}

impl<'a> PoolStats<'a> {
    pub(crate) fn new(env: Env<'a>, s: Snapshot) -> Self {
        let bounds = LATENCY_BUCKETS_US
            .iter()
            .map(|b| b.encode(env))
            .chain(std::iter::once(crate::atoms::infinity().encode(env)));
        PoolStats {
            calls: s.calls,
            errors: s.errors,
            latency: bounds.zip(s.latency).collect(),
            cache_hits: s.cache_hits,
            cache_misses: s.cache_misses,
            sessions: s.sessions,
            session_calls: s.session_calls,
            hung_calls: s.hung_calls,
        }
    }
}
