defmodule Mix.Tasks.Snakebridge.Sign do
  @shortdoc "Signs config manifests (ed25519), or makes a signing key"
  @moduledoc """
  Signs SnakeBridge config manifests, so that a manifest changed after review is refused
  when loaded (see `SnakeBridge.Config.Signature`).

      mix snakebridge.sign --keygen KEYFILE
      mix snakebridge.sign MANIFEST... --key KEYFILE

  `--keygen` writes a new secret key to `KEYFILE` (readable by you only; keep it out of
  the repository) and prints its public key, to list in `config :snakebridge,
  manifest_keys: [...]`. With `--key`, each `MANIFEST` gets a signature file beside it
  (`dspy.exs.sig`): commit it with the manifest, and sign again after every change.
  """
  use Mix.Task

  alias SnakeBridge.Config.Signature

  @switches [keygen: :string, key: :string, help: :boolean]

  @impl true
  def run(args) do
    case OptionParser.parse(args, strict: @switches) do
      {opts, manifests, []} ->
        cond do
          opts[:help] -> Mix.shell().info(@moduledoc)
          opts[:keygen] && manifests == [] && !opts[:key] -> keygen(opts[:keygen])
          opts[:key] && manifests != [] && !opts[:keygen] -> sign(manifests, opts[:key])
          true -> usage()
        end

      {_, _, invalid} ->
        Mix.raise(
          "unexpected options #{inspect(Enum.map(invalid, &elem(&1, 0)))}; see mix help snakebridge.sign"
        )
    end
  end

  defp usage do
    Mix.raise(
      "usage: mix snakebridge.sign --keygen KEYFILE | mix snakebridge.sign MANIFEST... --key KEYFILE"
    )
  end

  defp keygen(file) do
    if File.exists?(file), do: Mix.raise("#{file} exists; not overwriting a key")
    Mix.Task.run("compile")
    %{secret_key: secret, public_key: public} = Signature.keygen()
    File.mkdir_p!(Path.dirname(file))
    File.write!(file, secret <> "\n")
    File.chmod!(file, 0o600)
    Mix.shell().info("wrote the secret key to #{file}; its public key:\n#{public}")
  end

  defp sign(manifests, key_file) do
    Mix.Task.run("compile")

    secret =
      case File.read(key_file) do
        {:ok, secret} -> secret
        {:error, reason} -> Mix.raise("cannot read #{key_file}: #{:file.format_error(reason)}")
      end

    for manifest <- manifests do
      case Signature.sign(manifest, secret) do
        {:ok, sig} -> Mix.shell().info("signed #{manifest} -> #{sig}")
        {:error, message} -> Mix.raise(message)
      end
    end
  end
end
