defmodule SnakeBridge.Native do
  @moduledoc false
  # NIF stubs only. Public modules wrap these; users never call them.
  #
  # The library is loaded from `@on_load`. A missing or broken library does not stop the
  # module from loading: every stub then raises an error saying what failed and how to
  # build the library, instead of an opaque `:on_load` failure.

  @on_load :load_nif

  @doc false
  def load_nif do
    path = :filename.join(:code.priv_dir(:snakebridge), ~c"native/snakebridge_nif")

    case :erlang.load_nif(path, 0) do
      :ok ->
        :ok

      {:error, {:reload, _}} ->
        :ok

      {:error, {reason, text}} ->
        :persistent_term.put({__MODULE__, :load_error}, {reason, List.to_string(text)})
        :ok
    end
  end

  @doc false
  def load_error, do: :persistent_term.get({__MODULE__, :load_error}, nil)

  defp not_loaded do
    detail =
      case load_error() do
        {reason, text} -> "#{reason}: #{text}"
        nil -> "unknown reason"
      end

    raise RuntimeError,
          "SnakeBridge's native library is not loaded (#{detail}). " <>
            "Build it with `mix compile` (needs cargo) or `make setup`."
  end

  # The native contract, one stub each. Handles (`reference()`) are NIF resources; replies
  # to async NIFs arrive as `{tag, result}` messages sent to `pid`.

  alias SnakeBridge.Native.{Call, Describe, PoolOptions}

  @typep handle :: reference()
  @typep tag :: reference()
  @typep unsupported ::
           {:error,
            {:unsupported, String.t(), String.t()}
            | {:stale_ref | :payload_too_large, String.t()}}

  ## Pools and calls

  # Replies `{tag, {:ok, pool, shared_min_size | false, start_error_map | nil}}` or
  # `{tag, {:error, error_map}}`.
  @spec pool_start(PoolOptions.t(), pid(), tag()) :: :ok
  def pool_start(_options, _pid, _tag), do: not_loaded()

  # Replies `{tag, {:ok, term, {result_bytes, queue_us, cache_hit}}}` or
  # `{tag, {:error, error_map}}`.
  @spec pool_call(handle(), Call.t(), pid(), tag()) ::
          {:ok, handle(), non_neg_integer()} | unsupported()
  def pool_call(_pool, _call, _pid, _tag), do: not_loaded()

  @spec call_cancel(handle()) :: :ok
  def call_cancel(_handle), do: not_loaded()

  @spec call_expire(handle()) :: :ok
  def call_expire(_handle), do: not_loaded()

  # Replies `{tag, {:ok, [{worker_pid, {:ok, term} | {:error, error_map}}]}}`.
  @spec pool_broadcast(handle(), Call.t(), pid(), tag()) :: :ok | unsupported()
  def pool_broadcast(_pool, _call, _pid, _tag), do: not_loaded()

  # Sends `{tag, {:chunk, term}}` per chunk, then `{tag, :done}`, `{tag, {:error, map}}`
  # or `{tag, :cancelled}`.
  @spec pool_stream(handle(), Call.t(), pos_integer(), pid(), tag()) ::
          {:ok, handle()} | unsupported()
  def pool_stream(_pool, _call, _window, _pid, _tag), do: not_loaded()

  @spec stream_credit(handle(), pos_integer()) :: :ok
  def stream_credit(_handle, _chunks), do: not_loaded()

  @spec stream_cancel(handle()) :: :ok
  def stream_cancel(_handle), do: not_loaded()

  @spec pool_stats(handle()) :: map()
  def pool_stats(_pool), do: not_loaded()

  @spec pool_clear_cache(handle(), String.t() | nil) :: non_neg_integer()
  def pool_clear_cache(_pool, _integration), do: not_loaded()

  @spec pool_workers(handle()) :: [map()]
  def pool_workers(_pool), do: not_loaded()

  @spec pool_stop(handle()) :: :ok
  def pool_stop(_pool), do: not_loaded()

  ## Object references and sessions

  @spec ref_release(handle()) :: :ok
  def ref_release(_ref), do: not_loaded()

  @spec ref_alive(handle()) :: boolean()
  def ref_alive(_ref), do: not_loaded()

  # Replies `{tag, {:ok, session, worker_pid, session_id}}` or `{tag, {:error, error_map}}`.
  @spec session_checkout(handle(), pos_integer(), pid(), tag()) :: :ok
  def session_checkout(_pool, _timeout_ms, _pid, _tag), do: not_loaded()

  @spec session_release(handle()) :: :ok
  def session_release(_session), do: not_loaded()

  @spec session_alive(handle()) :: boolean()
  def session_alive(_session), do: not_loaded()

  ## Callbacks (Python calling Elixir functions)

  @spec callbacks_init(pid()) :: :ok
  def callbacks_init(_pid), do: not_loaded()

  @spec callbacks_count() :: non_neg_integer()
  def callbacks_count, do: not_loaded()

  @spec callback_reply(handle(), term()) :: :ok | {:error, term()}
  def callback_reply(_reply, _result), do: not_loaded()

  ## Introspection, descriptors, configs and the generator

  # Replies `{tag, {:ok, entry_map}}` or `{tag, {:error, error_map}}`.
  @spec describe(handle(), Describe.t(), pid(), tag()) :: :ok
  def describe(_pool, _spec, _pid, _tag), do: not_loaded()

  @spec descriptor_load(String.t(), String.t(), binary() | nil) ::
          {:ok, map()} | :miss | {:error, String.t()}
  def descriptor_load(_dir, _integration, _config), do: not_loaded()

  @spec descriptor_invalidate(String.t(), String.t()) :: {:ok, boolean()} | {:error, String.t()}
  def descriptor_invalidate(_dir, _integration), do: not_loaded()

  @spec config_validate(map()) :: :ok | {:error, [{String.t(), String.t()}]}
  def config_validate(_config), do: not_loaded()

  @spec generator_plan(map(), String.t(), String.t()) ::
          {:ok, [SnakeBridge.Generator.ModulePlan.t()]} | {:error, term()}
  def generator_plan(_config, _dir, _integration), do: not_loaded()

  ## The core's cross-language contract

  @spec contract() :: map()
  def contract, do: not_loaded()

  @spec naming_elixir_name(String.t()) :: String.t()
  def naming_elixir_name(_python_name), do: not_loaded()

  @spec naming_camelize(String.t()) :: String.t()
  def naming_camelize(_dotted), do: not_loaded()

  ## Codecs

  @spec codec_encode(term(), :msgpack | :json) ::
          {:ok, binary()} | {:error, {:unsupported, String.t(), String.t()} | String.t()}
  def codec_encode(_term, _codec), do: not_loaded()

  @spec codec_decode(binary(), :msgpack | :json) :: {:ok, term()} | {:error, String.t()}
  def codec_decode(_binary, _codec), do: not_loaded()

  ## Manifest signatures

  @spec manifest_keygen() :: {String.t(), String.t()}
  def manifest_keygen, do: not_loaded()

  @spec manifest_sign(binary(), String.t()) :: {:ok, String.t()} | {:error, String.t()}
  def manifest_sign(_manifest, _secret_key), do: not_loaded()

  @spec manifest_verify(binary(), String.t(), [String.t()]) ::
          {:ok, String.t()} | {:error, String.t()}
  def manifest_verify(_manifest, _signature_line, _trusted_keys), do: not_loaded()

  ## The dev-mode watcher

  @spec watch_start([String.t()], pid()) :: {:ok, handle()} | {:error, String.t()}
  def watch_start(_dirs, _pid), do: not_loaded()

  @spec watch_stop(handle()) :: :ok
  def watch_stop(_watcher), do: not_loaded()
end
