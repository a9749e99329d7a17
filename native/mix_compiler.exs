# SnakeBridge's native code, for Mix: loaded by `mix.exs` (SnakeBridge has no Hex
# dependencies, so neither `:rustler` nor `:rustler_precompiled` is available).

defmodule SnakeBridge.NativeBuild do
  @moduledoc false
  # What SnakeBridge's Mix compiler installs in `priv/native/`, and where it comes from:
  # the NIF and the worker's Python extension (`abi3`: one file for every CPython ≥ 3.10),
  # either downloaded as precompiled artifacts and checked against the checksum file that
  # ships in the package, or built from source with cargo.

  @root Path.dirname(__DIR__)

  @checksum_file "checksum-snakebridge.exs"
  @stamp ".snakebridge-native"

  # name in priv/native => {cargo package, file cargo builds, artifact name prefix, flavour}
  @libraries [
    {"snakebridge_nif.so", "libsnakebridge_nif.so", "snakebridge_nif", "nif-2.16"},
    {"snakebridge_agent_native.abi3.so", "lib_native.so", "snakebridge_agent", "abi3-py310"}
  ]

  @doc "The files the compiler installs, under `priv/native/`."
  def installed_names, do: Enum.map(@libraries, &elem(&1, 0))

  def root, do: @root
  # (Read when used: this file is loaded before SnakeBridge's project is defined.)
  def version, do: Mix.Project.config()[:version]
  def native_dir, do: Path.join([@root, "priv", "native"])
  def checksum_path(root \\ @root), do: Path.join(root, @checksum_file)
  def checksum_file, do: @checksum_file

  @doc """
  The Rust target this machine needs (`SNAKEBRIDGE_TARGET` overrides it), or nil when
  SnakeBridge has no name for it.
  """
  def target do
    System.get_env("SNAKEBRIDGE_TARGET") ||
      target_of(List.to_string(:erlang.system_info(:system_architecture)))
  end

  @doc false
  def target_of(architecture) do
    [cpu | _] = String.split(architecture, "-")
    cpu = if cpu in ["arm64", "aarch64"], do: "aarch64", else: cpu

    cond do
      architecture =~ "linux" and architecture =~ "musl" -> "#{cpu}-unknown-linux-musl"
      architecture =~ "linux" -> "#{cpu}-unknown-linux-gnu"
      architecture =~ "darwin" -> "#{cpu}-apple-darwin"
      true -> nil
    end
  end

  @doc "The artifact file names for `target`, one per installed library."
  def artifacts(target) do
    for {installed, _built, prefix, flavour} <- @libraries do
      {installed, "#{prefix}-v#{version()}-#{flavour}-#{target}.so.tar.gz"}
    end
  end

  @doc "Whether SNAKEBRIDGE_BUILD asks for a build from source."
  def force_build? do
    String.downcase(System.get_env("SNAKEBRIDGE_BUILD", "")) in ["1", "true", "yes"]
  end

  @doc """
  Reads a checksum file: `{:ok, %{artifact_name => "sha256:<hex>"}}`, `{:ok, %{}}` when
  there is none, or `{:error, message}`. The file is data (a map literal), never evaluated.
  """
  def read_checksums(path) do
    with {:ok, text} <- File.read(path),
         {:ok, quoted} <- Code.string_to_quoted(text, file: path),
         {:ok, map} <- literal_map(quoted) do
      {:ok, map}
    else
      {:error, :enoent} -> {:ok, %{}}
      {:error, reason} when is_atom(reason) -> {:error, "cannot read #{path}: #{reason}"}
      {:error, {_, message, token}} -> {:error, "#{path} is not valid: #{message}#{token}"}
      {:error, message} -> {:error, "#{path}: #{message}"}
    end
  end

  defp literal_map({:%{}, _, pairs}) do
    if Enum.all?(pairs, &match?({k, v} when is_binary(k) and is_binary(v), &1)),
      do: {:ok, Map.new(pairs)},
      else: {:error, "expected a map of artifact names to \"sha256:...\" strings"}
  end

  defp literal_map(_), do: {:error, "expected a map of artifact names to \"sha256:...\" strings"}

  @doc "`\"sha256:<hex>\"` of a file's contents."
  def checksum(path) do
    digest =
      File.stream!(path, [], 1_048_576)
      |> Enum.reduce(:crypto.hash_init(:sha256), &:crypto.hash_update(&2, &1))
      |> :crypto.hash_final()

    "sha256:" <> Base.encode16(digest, case: :lower)
  end

  @doc """
  Where to install from: `{:source, why}` or `{:precompiled, [{installed, artifact,
  checksum}]}`; `{:error, message}` when the checksum file is unreadable.
  """
  def plan do
    target = target()

    with :ok <- check_nif_version(),
         false <- force_build?() && {:source, "SNAKEBRIDGE_BUILD is set"},
         {:ok, sums} <- read_checksums(checksum_path()),
         false <- sums == %{} && {:source, "there is no #{@checksum_file}"},
         false <- target == nil && {:source, "no precompiled artifacts for this machine"} do
      wanted = artifacts(target)

      case Enum.reject(wanted, fn {_, artifact} -> Map.has_key?(sums, artifact) end) do
        [] ->
          {:precompiled, for({inst, art} <- wanted, do: {inst, art, Map.fetch!(sums, art)})}

        _missing ->
          {:source, "#{@checksum_file} has no artifacts for #{target}"}
      end
    end
  end

  # The NIF is built for NIF version 2.16 (OTP 24) and loads on any later one.
  defp check_nif_version do
    nif = List.to_string(:erlang.system_info(:nif_version))
    [major, minor] = nif |> String.split(".") |> Enum.map(&String.to_integer/1)

    if {major, minor} >= {2, 16},
      do: :ok,
      else:
        {:error, "SnakeBridge needs Erlang/OTP 24 or newer (NIF version 2.16); this VM has #{nif}"}
  end

  @doc "The release base URL artifacts are downloaded from."
  def base_url do
    System.get_env("SNAKEBRIDGE_RELEASE_URL") ||
      Application.get_env(:snakebridge, :release_url) ||
      "https://github.com/snakebridge/snakebridge/releases/download/v#{version()}"
  end

  @doc "The directory downloaded artifacts are kept in."
  def cache_dir do
    System.get_env("SNAKEBRIDGE_CACHE_DIR") || :filename.basedir(:user_cache, ~c"snakebridge")
  end

  ## Precompiled

  @doc "Whether the installed files are those artifacts (per the stamp) and still there."
  def installed?(entries) do
    stamp_matches?(Enum.map_join(entries, "\n", fn {_, art, sum} -> "#{art} #{sum}" end))
  end

  @doc "Downloads (or takes from the cache), verifies and installs the artifacts."
  def install_precompiled(entries) do
    Enum.reduce_while(entries, :ok, fn {installed, artifact, expected}, :ok ->
      with {:ok, archive} <- fetch(artifact, expected),
           :ok <- extract(archive, installed) do
        {:cont, :ok}
      else
        {:error, message} -> {:halt, {:error, message}}
      end
    end)
    |> case do
      :ok -> write_stamp(Enum.map_join(entries, "\n", fn {_, a, s} -> "#{a} #{s}" end))
      error -> error
    end
  end

  defp fetch(artifact, expected) do
    cached = Path.join(to_string(cache_dir()), artifact)

    if File.regular?(cached) and checksum(cached) == expected do
      {:ok, cached}
    else
      url = String.trim_trailing(base_url(), "/") <> "/" <> artifact
      Mix.shell().info("Downloading #{url}")

      with {:ok, body} <- download(url),
           :ok <- File.mkdir_p(Path.dirname(cached)),
           partial = cached <> ".part",
           :ok <- File.write(partial, body),
           :ok <- verify(partial, artifact, url, expected),
           :ok <- File.rename(partial, cached) do
        {:ok, cached}
      else
        {:error, message} when is_binary(message) ->
          {:error, message}

        {:error, reason} ->
          {:error, "cannot store #{artifact} in #{cache_dir()}: #{inspect(reason)}"}
      end
    end
  end

  defp verify(file, artifact, url, expected) do
    case checksum(file) do
      ^expected ->
        :ok

      actual ->
        File.rm(file)

        {:error,
         "the precompiled artifact #{artifact} (from #{url}) has checksum #{actual}, but " <>
           "#{@checksum_file} expects #{expected}: refused, nothing was installed. " <>
           "Set SNAKEBRIDGE_BUILD=true to build from source with cargo instead."}
    end
  end

  @doc false
  def download(url) do
    {:ok, _} = Application.ensure_all_started(:inets)
    https? = String.starts_with?(url, "https://")

    ssl =
      if https? do
        case Application.ensure_all_started(:ssl) do
          {:ok, _} ->
            [
              verify: :verify_peer,
              cacerts: :public_key.cacerts_get(),
              depth: 4,
              customize_hostname_check: [
                match_fun: :public_key.pkix_verify_hostname_match_fun(:https)
              ]
            ]

          {:error, reason} ->
            throw({:no_ssl, reason})
        end
      else
        []
      end

    set_proxy(url)
    options = [ssl: ssl, connect_timeout: 15_000, timeout: 300_000, autoredirect: true]

    case :httpc.request(:get, {String.to_charlist(url), []}, options, body_format: :binary) do
      {:ok, {{_, 200, _}, _headers, body}} ->
        {:ok, body}

      {:ok, {{_, status, reason}, _headers, _body}} ->
        {:error, download_error(url, "HTTP #{status} #{reason}")}

      {:error, reason} ->
        {:error, download_error(url, inspect(reason))}
    end
  catch
    {:no_ssl, reason} ->
      {:error, download_error(url, "Erlang's :ssl application cannot start (#{inspect(reason)})")}
  end

  defp download_error(url, why) do
    "could not download #{url}: #{why}. Set SNAKEBRIDGE_RELEASE_URL to a mirror of the " <>
      "release artifacts, or SNAKEBRIDGE_BUILD=true to build from source with cargo."
  end

  # HTTP(S)_PROXY from the environment, except for loopback addresses.
  defp set_proxy(url) do
    %URI{scheme: scheme, host: host} = URI.parse(url)
    https? = scheme == "https"
    names = if https?, do: ~w(HTTPS_PROXY https_proxy), else: ~w(HTTP_PROXY http_proxy)

    with proxy when is_binary(proxy) <- Enum.find_value(names, &System.get_env/1),
         false <- host in ["127.0.0.1", "localhost", "::1"],
         %URI{host: proxy_host, port: port} when is_binary(proxy_host) <- URI.parse(proxy) do
      option = if https?, do: :https_proxy, else: :proxy
      :httpc.set_options([{option, {{String.to_charlist(proxy_host), port}, []}}])
    end
  end

  defp extract(archive, installed) do
    tmp = Path.join(native_dir(), ".extract-#{System.unique_integer([:positive])}")
    File.mkdir_p!(tmp)

    try do
      case :erl_tar.extract(String.to_charlist(archive), [
             :compressed,
             {:cwd, String.to_charlist(tmp)}
           ]) do
        :ok ->
          extracted = Path.join(tmp, installed)

          if File.regular?(extracted),
            do: place(extracted, Path.join(native_dir(), installed)),
            else: {:error, "#{archive} does not hold #{installed}"}

        {:error, reason} ->
          {:error, "cannot unpack #{archive}: #{inspect(reason)}"}
      end
    after
      File.rm_rf(tmp)
    end
  end

  # A new file takes the place of the old by rename: a VM or a worker that has the old
  # library mapped keeps its (unlinked) copy intact.
  defp place(from, to) do
    staged = to <> ".new"
    File.cp!(from, staged)
    File.rename!(staged, to)
    :ok
  end

  ## From source

  @doc "Source files whose change means a rebuild."
  def sources do
    Path.wildcard(Path.join(@root, "native/*/{src,examples}/**/*.rs")) ++
      Path.wildcard(Path.join(@root, "native/*/{Cargo.toml,build.rs}")) ++
      Path.wildcard(Path.join(@root, "proto/*.proto")) ++
      Enum.filter([Path.join(@root, "Cargo.toml"), Path.join(@root, "Cargo.lock")], &File.exists?/1)
  end

  @doc "Whether a source build is needed: a library missing, older than a source, or precompiled."
  def source_stale? do
    built =
      Enum.map(installed_names(), fn name ->
        case File.stat(Path.join(native_dir(), name), time: :posix) do
          {:ok, %{mtime: mtime}} -> mtime
          {:error, _} -> nil
        end
      end)

    not stamp_matches?("source") or Enum.any?(built, &is_nil/1) or
      Enum.any?(sources(), &(File.stat!(&1, time: :posix).mtime > Enum.min(built)))
  end

  def target_dir do
    System.get_env("SNAKEBRIDGE_CARGO_TARGET_DIR") || Path.join([@root, "_build", "cargo"])
  end

  @doc "Builds both libraries with cargo and installs them."
  def build_from_source do
    case System.find_executable("cargo") do
      nil ->
        {:error,
         "cargo was not found on PATH, and SnakeBridge has no precompiled artifacts to use " <>
           "(#{why_source()}); install Rust (https://rustup.rs) or unset SNAKEBRIDGE_BUILD"}

      cargo ->
        Mix.shell().info("Compiling SnakeBridge's native code with cargo (#{why_source()})")

        args =
          ~w(build --release --locked -p snakebridge_nif -p snakebridge_py --features snakebridge_py/extension-module) ++
            ["--target-dir", target_dir()]

        # An abi3 extension needs no particular interpreter to build.
        env = [{"PYO3_NO_PYTHON", "1"}]

        case System.cmd(cargo, args, cd: @root, env: env, stderr_to_stdout: true, into: IO.stream()) do
          {_, 0} -> install_built()
          {_, status} -> {:error, "cargo build failed with exit status #{status}"}
        end
    end
  end

  defp why_source do
    case plan() do
      {:source, why} -> why
      _ -> "a source build was asked for"
    end
  end

  defp install_built do
    File.mkdir_p!(native_dir())

    for {installed, built, _, _} <- @libraries do
      place(Path.join([target_dir(), "release", built]), Path.join(native_dir(), installed))
    end

    write_stamp("source")
  end

  defp stamp_matches?(contents) do
    Enum.all?(installed_names(), &File.regular?(Path.join(native_dir(), &1))) and
      File.read(Path.join(native_dir(), @stamp)) == {:ok, contents}
  end

  defp write_stamp(contents) do
    File.mkdir_p!(native_dir())
    File.write!(Path.join(native_dir(), @stamp), contents)
    :ok
  end

  ## Release

  @doc """
  Packs the installed libraries (build them from source first) as this target's release
  artifacts in `dir`, and writes `dir/checksum-snakebridge.exs` with the checksums of every
  artifact in `dir`. Returns the artifact paths.
  """
  def release(dir) do
    target = target() || Mix.raise("SnakeBridge has no target name for this machine")
    File.mkdir_p!(dir)

    paths =
      for {installed, artifact} <- artifacts(target) do
        source = Path.join(native_dir(), installed)
        unless File.regular?(source), do: Mix.raise("#{source} is missing: build it first")
        path = Path.join(dir, artifact)

        :ok =
          :erl_tar.create(
            String.to_charlist(path),
            [{String.to_charlist(installed), String.to_charlist(source)}],
            [:compressed]
          )

        path
      end

    sums =
      dir
      |> Path.join("*.so.tar.gz")
      |> Path.wildcard()
      |> Enum.sort()
      |> Map.new(&{Path.basename(&1), checksum(&1)})

    File.write!(
      Path.join(dir, @checksum_file),
      inspect(sums, limit: :infinity, pretty: true) <> "\n"
    )

    paths
  end
end

defmodule Mix.Tasks.Compile.SnakebridgeNative do
  @moduledoc """
  Installs SnakeBridge's native code in `priv/native/`: the NIF (`snakebridge_nif.so`)
  and the worker's Python extension (`snakebridge_agent_native.abi3.so`, built for
  CPython's stable ABI, so one file serves every CPython ≥ 3.10).

  Where they come from, like other Rust NIF libraries:

    * **Precompiled**, when the package has a `checksum-snakebridge.exs` listing artifacts
      for this machine's target: they are downloaded from the release base URL
      (`SNAKEBRIDGE_RELEASE_URL`, or `config :snakebridge, release_url: ...`; GitHub
      releases by default), kept in `SNAKEBRIDGE_CACHE_DIR` (default: the user cache
      directory), and installed only when their SHA-256 matches the checksum file. A
      mismatch is refused with an error naming the file and both checksums.
    * **From source** with cargo when `SNAKEBRIDGE_BUILD=true`, or when there is no
      artifact for this target (or no checksum file, as in a git checkout). The cargo target
      directory is `SNAKEBRIDGE_CARGO_TARGET_DIR`, default `_build/cargo` in SnakeBridge's
      directory; a build is skipped when no source changed.

  `SNAKEBRIDGE_SKIP_NIF=1` skips this compiler (the libraries must then be in place).
  Installed files are replaced by rename, so a running VM or worker that has the old
  library mapped keeps its copy intact.
  """
  use Mix.Task.Compiler

  alias SnakeBridge.NativeBuild

  @impl true
  def run(_args) do
    if System.get_env("SNAKEBRIDGE_SKIP_NIF") == "1" do
      {:noop, []}
    else
      case NativeBuild.plan() do
        {:precompiled, entries} ->
          if NativeBuild.installed?(entries),
            do: {:noop, []},
            else: result(NativeBuild.install_precompiled(entries))

        {:source, _why} ->
          if NativeBuild.source_stale?(),
            do: result(NativeBuild.build_from_source()),
            else: {:noop, []}

        {:error, message} ->
          result({:error, message})
      end
    end
  end

  defp result(:ok), do: {:ok, []}

  defp result({:error, message}) do
    diagnostic = %Mix.Task.Compiler.Diagnostic{
      compiler_name: "snakebridge_native",
      file: Path.join(NativeBuild.root(), "mix.exs"),
      message: message,
      position: nil,
      severity: :error
    }

    Mix.shell().error(message)
    {:error, [diagnostic]}
  end
end

defmodule Mix.Tasks.Snakebridge.ReleaseArtifacts do
  @shortdoc "Builds SnakeBridge's precompiled artifacts and their checksum file"
  @moduledoc """
  Builds the NIF and the worker extension from source and packs them as this machine's
  release artifacts, with `checksum-snakebridge.exs` covering every artifact in the
  directory (run it on each target into the same directory, upload the artifacts to the
  release, and ship the checksum file in the package).

      mix snakebridge.release_artifacts [DIR]    # default _build/release
  """
  use Mix.Task

  @impl true
  def run(args) do
    dir = List.first(args) || Path.join([SnakeBridge.NativeBuild.root(), "_build", "release"])

    System.put_env("SNAKEBRIDGE_BUILD", "true")

    with :ok <- build() do
      for path <- SnakeBridge.NativeBuild.release(dir), do: Mix.shell().info("wrote #{path}")
      Mix.shell().info("wrote #{Path.join(dir, SnakeBridge.NativeBuild.checksum_file())}")
    end
  end

  defp build do
    if SnakeBridge.NativeBuild.source_stale?() do
      case SnakeBridge.NativeBuild.build_from_source() do
        :ok -> :ok
        {:error, message} -> Mix.raise(message)
      end
    else
      :ok
    end
  end
end
