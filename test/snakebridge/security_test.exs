defmodule SnakeBridge.SecurityTest do
  # allowed_modules, enforced by the core on names and by the worker on objects.
  use ExUnit.Case, async: true

  alias SnakeBridge.{Error, Pool, Runtime, TestPool}

  @pool :restricted
  @opts [pool: @pool]

  setup_all do
    start_supervised!(
      {TestPool, name: @pool, size: 1, allowed_modules: ["math", "os.path", "sb_fixtures"]}
    )

    :ok
  end

  defp call(module, function, args), do: SnakeBridge.call(module, function, args, [], @opts)

  defp marker do
    path = Path.join(System.tmp_dir!(), "sb-escape-#{System.unique_integer([:positive])}")
    on_exit(fn -> File.rm(path) end)
    path
  end

  test "calls inside the allowed modules work" do
    assert call("math", "sqrt", [16]) == {:ok, 4.0}
    assert call("os.path", "join", ["a", "b"]) == {:ok, "a/b"}
    assert {:ok, _} = call("sb_fixtures", "echo", [1])
    assert "math" in Pool.settings(@pool)[:allowed_modules]
  end

  test "the core refuses targets outside the list and private names before anything is sent" do
    file = marker()

    for {module, function, args} <- [
          {"os", "system", ["touch #{file}"]},
          {"subprocess", "run", [["touch", file]]},
          {"builtins", "eval", ["__import__('os').system('touch #{file}')"]},
          {"builtins", "__import__", ["os"]},
          {"math", "__loader__", []},
          {"sb_fixtures", "_private", []},
          {"os.path", "os", []}
        ] do
      assert {:error, %Error{reason: :not_allowed, message: message}} = call(module, function, args)

      assert message =~ "allowed_modules", message
    end

    refute File.exists?(file)
  end

  test "the worker refuses what allowed paths resolve to outside the list" do
    file = marker()

    # The paths start with an allowed module; the core lets them through, the worker
    # finds the module `os` on the way, or a function defined in it.
    for {module, function} <- [{"sb_fixtures.os", "system"}, {"sb_fixtures", "run_shell"}] do
      assert {:error, %Error{reason: :not_allowed, message: message}} =
               call(module, function, ["touch #{file}"])

      assert message =~ ~r/'(os|posix)'/, message
    end

    refute File.exists?(file)
  end

  test "objects the pool holds give no way out: private members, modules and their functions" do
    file = marker()
    {:ok, holder} = Runtime.create_instance("sb_fixtures", "Holder", [], [], @opts)
    assert Runtime.get_attr(holder, "label") == {:ok, "holder"}

    assert {:error, %Error{reason: :not_allowed}} = Runtime.get_attr(holder, "module")
    assert {:error, %Error{reason: :not_allowed}} = Runtime.get_attr(holder, "shell")

    assert {:error, %Error{reason: :not_allowed}} =
             Runtime.call_method(holder, "shell", ["touch #{file}"])

    for name <- ["__class__", "__dict__", "__reduce_ex__", "__init__"] do
      assert {:error, %Error{reason: :not_allowed}} = Runtime.get_attr(holder, name)
      assert {:error, %Error{reason: :not_allowed}} = Runtime.call_method(holder, name, [])
    end

    assert {:error, %Error{reason: :not_allowed}} = Runtime.set_attr(holder, "__class__", 1)
    refute File.exists?(file)
  end

  test "introspection outside the list is refused" do
    assert {:error, %Error{reason: :not_allowed}} =
             SnakeBridge.Introspection.describe("subprocess", pool: @pool, force: true)
  end

  test "an integration's allowed_modules restrict the pool, with its python_module" do
    config = %{python_module: "math", allowed_modules: ["os.path"]}
    start_supervised!({TestPool, name: :by_config, size: 1, integrations: [config]})
    allowed = Pool.settings(:by_config)[:allowed_modules]
    assert "math" in allowed and "os.path" in allowed

    assert SnakeBridge.call("math", "floor", [2.5], [], pool: :by_config) == {:ok, 2}

    assert {:error, %Error{reason: :not_allowed}} =
             SnakeBridge.call("json", "dumps", [1], [], pool: :by_config)
  end

  test "bad allowed_modules are refused when the pool starts" do
    assert_raise ArgumentError, ~r/allowed_modules/, fn ->
      Pool.start_link(name: :bad_allow, allowed_modules: ["os system"])
    end
  end

  describe "secrets" do
    setup do
      secret = "sk-test-" <> Base.encode16(:crypto.strong_rand_bytes(12))
      System.put_env("SB_SECURITY_SECRET", secret)
      on_exit(fn -> System.delete_env("SB_SECURITY_SECRET") end)

      config = %SnakeBridge.Config{
        python_module: "sb_fixtures",
        init: [%{python_path: "sb_fixtures.set_global", args: [{:system, "SB_SECURITY_SECRET"}]}]
      }

      %{secret: secret, config: config}
    end

    test "a resolved secret never shows in errors, tracebacks, stderr, inspect or logs", %{
      secret: secret,
      config: config
    } do
      log =
        ExUnit.CaptureLog.capture_log(fn ->
          start_supervised!({TestPool, name: :secretive, size: 1, integrations: [config]})
          opts = [pool: :secretive]

          # Python has the value (the init call used it)...
          assert SnakeBridge.call!("sb_fixtures", "get_global", [], [], opts) == secret

          # ...but an exception that mentions it comes back redacted,
          assert {:error, %Error{reason: :python_exception} = raised} =
                   SnakeBridge.call("sb_fixtures", "leak_global", [], [], opts)

          assert raised.python.message =~ "the service refused the key [REDACTED]"

          # and so does what the worker printed before it died.
          assert {:error, %Error{reason: :worker_crashed} = crashed} =
                   SnakeBridge.call("sb_fixtures", "leak_global_and_die", [], [], opts)

          assert crashed.stderr_tail =~ "connecting with key [REDACTED]"

          reported =
            Enum.join([
              inspect(raised, limit: :infinity, printable_limit: :infinity),
              Exception.message(raised),
              Exception.message(raised.python),
              raised.python.traceback,
              inspect(crashed, limit: :infinity, printable_limit: :infinity),
              crashed.stderr_tail,
              inspect(config, limit: :infinity),
              inspect(Pool.settings(:secretive), limit: :infinity),
              inspect(SnakeBridge.stats(:secretive), limit: :infinity)
            ])

          refute reported =~ secret
          require Logger
          Logger.error("the call failed: " <> Exception.message(raised))
        end)

      assert log =~ "[REDACTED]"
      refute log =~ secret
    end

    test "a secret in a failing init call is redacted from the pool's start error", %{
      secret: secret,
      config: config
    } do
      failing = %{config | init: config.init ++ [%{python_path: "sb_fixtures.leak_global"}]}

      assert {:error, {%Error{reason: :worker_start_failed} = error, _}} =
               start_supervised(
                 {TestPool, name: :secretive_init, size: 1, strict: true, integrations: [failing]}
               )

      assert error.message =~ "the service refused the key [REDACTED]"
      refute inspect(error, limit: :infinity, printable_limit: :infinity) =~ secret
    end

    test "the pool's :redact option redacts other values too" do
      start_supervised!({TestPool, name: :redacting, size: 1, redact: ["hunter2-password"]})

      assert {:error, %Error{} = error} =
               SnakeBridge.call("sb_fixtures", "fail", ["wrong password hunter2-password"], [],
                 pool: :redacting
               )

      assert error.message =~ "wrong password [REDACTED]"
    end

    test "generated modules, their source and the descriptor caches never hold a secret", %{
      secret: secret
    } do
      # A config whose init call takes the secret, generated while the variable is set:
      # generation keeps `{:system, ...}` and leaves resolving it to the pool.
      config = %{
        python_module: "json",
        elixir_module: SnakeBridge.SecretTest.JSON,
        introspection: %{cache_path: "test/fixtures/schemas"},
        functions: [%{python_path: "json.dumps"}],
        init: [%{python_path: "json.dumps", args: [{:system, "SB_SECURITY_SECRET"}]}]
      }

      quoted = SnakeBridge.Generator.quoted(config)
      refute Macro.to_string(quoted) =~ secret

      for {:defmodule, _, [name | _]} = module <- quoted do
        [{^name, beam}] = Code.compile_quoted(module)
        refute beam =~ secret, "#{inspect(name)}'s .beam holds the secret"
        :code.purge(name)
        :code.delete(name)
      end

      files =
        Enum.flat_map(
          ["priv/snakebridge", ".snakebridge_cache", "test/fixtures/schemas", "_build/test/lib"],
          &Path.wildcard(Path.join(&1, "**/*"), match_dot: true)
        )

      leaked = for file <- files, File.regular?(file), File.read!(file) =~ secret, do: file
      assert leaked == []
    end
  end
end
