defmodule SnakeBridge.SignatureTest do
  # Signed manifests and the audit log. Not async: the audit log is application config.
  use ExUnit.Case, async: false

  alias SnakeBridge.Config.{Loader, Signature}

  @manifest """
  %{python_module: "json", functions: [%{python_path: "json.dumps"}]}
  """

  setup do
    dir = Path.join(System.tmp_dir!(), "sb-signed-#{System.unique_integer([:positive])}")
    File.mkdir_p!(dir)
    on_exit(fn -> File.rm_rf!(dir) end)
    path = Path.join(dir, "json.exs")
    File.write!(path, @manifest)
    %{dir: dir, path: path}
  end

  defp refusal(path, opts \\ []) do
    assert {:error, [{"config", message}]} = Loader.load(path, opts)
    message
  end

  test "a signed manifest loads until its content changes", %{path: path} do
    %{secret_key: secret, public_key: public} = Signature.keygen()
    assert {:ok, sig} = Signature.sign(path, secret)
    assert sig == path <> ".sig"
    assert File.read!(sig) =~ ~r/^ed25519 #{public} [0-9a-f]{128}\n$/

    assert {:ok, %SnakeBridge.Config{python_module: "json"}} = Loader.load(path)
    assert {:ok, _} = Loader.load(path, manifest_keys: [public])

    # One byte changed after signing.
    File.write!(path, String.replace(@manifest, "json.dumps", "json.loads"))
    message = refusal(path)
    assert message =~ path
    assert message =~ "the manifest changed after it was signed"
  end

  test "only trusted keys count when keys are configured", %{path: path} do
    %{secret_key: secret} = Signature.keygen()
    %{public_key: trusted} = Signature.keygen()
    {:ok, _} = Signature.sign(path, secret)
    assert refusal(path, manifest_keys: [trusted]) =~ "not a trusted manifest key"
  end

  test "unsigned manifests load unless signatures are required", %{path: path} do
    assert {:ok, _} = Loader.load(path)
    assert refusal(path, require_signed_manifests: true) =~ "it is not signed"
  end

  test "a malformed signature file is refused", %{path: path} do
    File.write!(path <> ".sig", "ed25519 not-a-key\n")
    assert refusal(path) =~ "ed25519 <public key> <signature>"
  end

  test "mix snakebridge.sign makes a key and signs manifests", %{dir: dir, path: path} do
    key = Path.join(dir, "keys/manifest.key")
    Mix.shell(Mix.Shell.Process)
    on_exit(fn -> Mix.shell(Mix.Shell.IO) end)

    Mix.Task.rerun("snakebridge.sign", ["--keygen", key])
    assert_received {:mix_shell, :info, [info]}
    [public] = Regex.run(~r/[0-9a-f]{64}$/, info)
    assert Bitwise.band(File.stat!(key).mode, 0o777) == 0o600

    Mix.Task.rerun("snakebridge.sign", [path, "--key", key])
    assert_received {:mix_shell, :info, ["signed " <> _]}
    assert {:ok, _} = Loader.load(path, manifest_keys: [public], require_signed_manifests: true)

    assert_raise Mix.Error, ~r/not overwriting/, fn ->
      Mix.Task.rerun("snakebridge.sign", ["--keygen", key])
    end

    assert_raise Mix.Error, ~r/usage/, fn -> Mix.Task.rerun("snakebridge.sign", [path]) end
  end

  test "the audit log records manifests and each descriptor's hash, one JSON object per line",
       %{dir: dir, path: path} do
    log = Path.join(dir, "audit/log.jsonl")
    Application.put_env(:snakebridge, :audit_log, log)
    on_exit(fn -> Application.delete_env(:snakebridge, :audit_log) end)

    %{secret_key: secret, public_key: public} = Signature.keygen()
    {:ok, _} = Signature.sign(path, secret)
    {:ok, _} = Loader.load(path)

    cache = Path.join(dir, "schemas")
    assert {:ok, made} = SnakeBridge.Introspection.describe("json", cache_dir: cache, force: true)
    assert {:ok, read} = SnakeBridge.Introspection.load("json", cache_dir: cache)

    entries =
      for line <- log |> File.read!() |> String.split("\n", trim: true) do
        {:ok, entry} = SnakeBridge.TypeConverter.from_python(line, :json)
        entry
      end

    assert [manifest, introspected, cached] = entries
    assert %{"event" => "manifest", "path" => ^path, "signed_by" => ^public} = manifest
    assert manifest["sha256"] == :crypto.hash(:sha256, @manifest) |> Base.encode16(case: :lower)

    assert %{"event" => "descriptor", "source" => "introspected", "integration" => "json"} =
             introspected

    assert introspected["descriptor_hash"] == made.descriptor_hash
    assert %{"event" => "descriptor", "source" => "cache"} = cached
    assert cached["descriptor_hash"] == read.descriptor_hash
    assert {:ok, _, _} = DateTime.from_iso8601(cached["time"])
  end
end
