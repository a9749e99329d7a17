defmodule SnakeBridge.Audit do
  @moduledoc """
  An append-only audit log of what SnakeBridge loaded: one JSON object per line.

  Off unless configured:

      config :snakebridge, audit_log: "/var/log/my_app/snakebridge-audit.jsonl"

  Events (each with `"time"`, UTC ISO 8601, and `"event"`):

    * `"manifest"` - a config manifest was read: `"path"`, its `"sha256"` and
      `"signed_by"` (the signer's public key, or null; see `SnakeBridge.Config.Signature`).
    * `"descriptor"` - a library descriptor was made by a worker (`"source": "introspected"`)
      or read from the descriptor cache (`"source": "cache"`): `"integration"`,
      `"descriptor_hash"`, `"config_hash"`, `"library_version"`, `"python_version"`.

  Lines are written with a single append each, so concurrent writers (several VMs, a
  compile and a running node) never interleave within a line. A log that cannot be
  written is reported on stderr; it never fails what was being loaded.
  """

  @doc "The configured log path, or nil."
  @spec path() :: Path.t() | nil
  def path, do: Application.get_env(:snakebridge, :audit_log)

  @doc """
  Appends an `event` with `fields` (string or atom keys, JSON values) to the log, if one
  is configured. Returns `:ok`.
  """
  @spec record(String.t(), map()) :: :ok
  def record(event, fields) do
    case path() do
      nil -> :ok
      path -> append(path, Map.merge(%{"time" => now(), "event" => event}, stringify(fields)))
    end
  end

  @doc false
  # The descriptor entry's audit fields.
  @spec record_descriptor(SnakeBridge.Descriptor.Entry.t(), String.t()) :: :ok
  def record_descriptor(%SnakeBridge.Descriptor.Entry{} = entry, source) do
    record("descriptor", %{
      "integration" => entry.integration,
      "descriptor_hash" => entry.descriptor_hash,
      "config_hash" => entry.config_hash,
      "library_version" => entry.library_version,
      "python_version" => entry.python_version,
      "source" => source
    })
  end

  defp append(path, entry) do
    with {:ok, json} <- SnakeBridge.TypeConverter.to_python(entry, :json),
         :ok <- File.mkdir_p(Path.dirname(path)),
         :ok <- File.write(path, [json, ?\n], [:append, :binary]) do
      :ok
    else
      {:error, reason} ->
        IO.puts(:stderr, "SnakeBridge: cannot write the audit log #{path}: #{format(reason)}")
        :ok
    end
  end

  defp stringify(fields), do: Map.new(fields, fn {k, v} -> {to_string(k), v} end)
  defp now, do: DateTime.utc_now() |> DateTime.truncate(:millisecond) |> DateTime.to_iso8601()
  defp format(reason) when is_atom(reason), do: :file.format_error(reason)
  defp format(reason), do: to_string(reason)
end
