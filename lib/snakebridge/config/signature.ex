defmodule SnakeBridge.Config.Signature do
  @moduledoc """
  Signed config manifests, for environments where a changed manifest must not load.

  A manifest `config/snakebridge/dspy.exs` is signed by `dspy.exs.sig` beside it: one
  line, `ed25519 <public key> <signature>` (hex), an ed25519 signature over the
  manifest's bytes made by the Rust core (`ed25519-dalek`). `SnakeBridge.Config.Loader`
  checks it whenever it reads the manifest (partials included): a manifest whose bytes
  changed after it was signed is refused with an error naming the file.

      config :snakebridge,
        # Signers whose signatures count (hex public keys); with none, any key verifies.
        manifest_keys: ["3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29"],
        # Refuse manifests without a signature (default false).
        require_signed_manifests: true

  Make a key pair and sign with `mix snakebridge.sign` (`--keygen KEYFILE` once, then
  `mix snakebridge.sign MANIFEST --key KEYFILE`), or with `keygen/0` and `sign/2`.
  """

  alias SnakeBridge.Native

  @doc "A new key pair: `%{secret_key: hex, public_key: hex}`. Keep the secret key secret."
  @spec keygen() :: %{secret_key: String.t(), public_key: String.t()}
  def keygen do
    {secret, public} = Native.manifest_keygen()
    %{secret_key: secret, public_key: public}
  end

  @doc """
  Signs the manifest at `path` with `secret_key` (hex), writing `path <> ".sig"`.
  Returns `{:ok, signature_path}` or `{:error, message}`.
  """
  @spec sign(Path.t(), String.t()) :: {:ok, Path.t()} | {:error, String.t()}
  def sign(path, secret_key) do
    with {:ok, source} <- read(path),
         {:ok, line} <- Native.manifest_sign(source, String.trim(secret_key)),
         :ok <- write(signature_path(path), line) do
      {:ok, signature_path(path)}
    end
  end

  @doc """
  Checks the manifest `source` read from `path` against its signature file, as the
  application config asks (see the module docs; the `:manifest_keys` and
  `:require_signed_manifests` options override it). Returns `{:ok, signer}` (the signer's
  public key, or nil for an unsigned manifest that may load) or `{:error, message}`.
  """
  @spec check(Path.t(), binary(), keyword()) :: {:ok, String.t() | nil} | {:error, String.t()}
  def check(path, source, opts \\ []) do
    keys = Keyword.get_lazy(opts, :manifest_keys, fn -> env(:manifest_keys, []) end)

    required? =
      Keyword.get_lazy(opts, :require_signed_manifests, fn ->
        env(:require_signed_manifests, false)
      end)

    case File.read(signature_path(path)) do
      {:ok, line} ->
        case Native.manifest_verify(source, line, Enum.map(keys, &String.trim/1)) do
          {:ok, signer} -> {:ok, signer}
          {:error, message} -> {:error, "#{path}: refused, #{message}"}
        end

      {:error, :enoent} when required? ->
        {:error, "#{path}: refused, it is not signed (require_signed_manifests is set)"}

      {:error, :enoent} ->
        {:ok, nil}

      {:error, reason} ->
        {:error, "cannot read #{signature_path(path)}: #{:file.format_error(reason)}"}
    end
  end

  @doc "The signature file of the manifest at `path`."
  @spec signature_path(Path.t()) :: Path.t()
  def signature_path(path), do: path <> ".sig"

  defp env(key, default), do: Application.get_env(:snakebridge, key, default)

  defp read(path) do
    case File.read(path) do
      {:ok, source} -> {:ok, source}
      {:error, reason} -> {:error, "cannot read #{path}: #{:file.format_error(reason)}"}
    end
  end

  defp write(path, contents) do
    case File.write(path, contents) do
      :ok -> :ok
      {:error, reason} -> {:error, "cannot write #{path}: #{:file.format_error(reason)}"}
    end
  end
end
