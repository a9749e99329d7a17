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

  def pool_start(_options, _pid, _tag), do: not_loaded()

  def pool_call(
        _pool,
        _name,
        _op,
        _target,
        _args,
        _kwargs,
        _timeout,
        _ref?,
        _session,
        _cache,
        _codecs,
        _pid,
        _tag
      ),
      do: not_loaded()

  def pool_stats(_pool), do: not_loaded()
  def pool_clear_cache(_pool, _integration), do: not_loaded()

  def call_cancel(_handle), do: not_loaded()

  def pool_broadcast(_pool, _name, _target, _args, _kwargs, _timeout_ms, _codecs, _pid, _tag),
    do: not_loaded()

  def pool_stream(
        _pool,
        _name,
        _op,
        _target,
        _args,
        _kwargs,
        _timeout,
        _window,
        _session,
        _codecs,
        _pid,
        _tag
      ),
      do: not_loaded()

  def stream_credit(_handle, _chunks), do: not_loaded()
  def stream_cancel(_handle), do: not_loaded()
  def pool_workers(_pool), do: not_loaded()
  def pool_stop(_pool), do: not_loaded()
  def ref_release(_ref), do: not_loaded()
  def callbacks_init(_pid), do: not_loaded()

  def describe(_pool, _dir, _name, _module, _subs, _depth, _excl, _config, _force, _ms, _pid, _tag),
    do: not_loaded()

  def descriptor_load(_dir, _integration, _config), do: not_loaded()
  def config_validate(_config), do: not_loaded()
  def codec_encode(_term, _codec), do: not_loaded()
  def manifest_keygen, do: not_loaded()
  def manifest_sign(_manifest, _secret_key), do: not_loaded()
  def manifest_verify(_manifest, _signature_line, _trusted_keys), do: not_loaded()
  def codec_decode(_binary, _codec), do: not_loaded()
  def generator_plan(_config, _dir, _integration), do: not_loaded()
  def descriptor_invalidate(_dir, _integration), do: not_loaded()
  def session_checkout(_pool, _timeout_ms, _pid, _tag), do: not_loaded()
  def session_release(_session), do: not_loaded()
  def session_alive(_session), do: not_loaded()
  def callbacks_count, do: not_loaded()
  def callback_reply(_reply, _result), do: not_loaded()
  def ref_alive(_ref), do: not_loaded()
  def watch_start(_dirs, _pid), do: not_loaded()
  def watch_stop(_watcher), do: not_loaded()
end
