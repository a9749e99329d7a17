defmodule SnakeBridge.HostileCallbacksTest do
  # Elixir functions handed to Python are capabilities: a worker can call (or release) only
  # the functions sent to it, for as long as their call or session lasts. The hostile code
  # (test/support/python/sb_hostile_callbacks.py) rewrites the id inside a callable it was
  # legitimately given, as any Python code with ctypes can.
  #
  # Not async: some assertions count the functions kept in the whole VM.
  use ExUnit.Case, async: false

  import SnakeBridge.Eventually

  alias SnakeBridge.{Callbacks, Error, Session, TestPool}

  @victim_secret "victim secret"
  @tool_secret "tool secret"

  setup do
    unique = System.unique_integer([:positive])
    victim = :"hostile_victim_#{unique}"
    attacker = :"hostile_attacker_#{unique}"

    start_supervised!(
      {TestPool, name: victim, size: 2, tools: [{"vault", fn -> @tool_secret end}]},
      id: victim
    )

    start_supervised!({TestPool, name: attacker, size: 1}, id: attacker)
    %{victim: victim, attacker: attacker}
  end

  defp hostile(function, args, opts),
    do: SnakeBridge.call!("sb_hostile_callbacks", function, args, [], opts)

  defp call_tool(opts), do: SnakeBridge.call!("sb_fixtures", "call_tool", ["vault"], [], opts)

  # Two sessions of `pool` pinned to different workers.
  defp sessions_on_two_workers(pool) do
    {:ok, first} = Session.checkout(pool: pool)

    second =
      Enum.find_value(1..20, fn _ ->
        {:ok, session} = Session.checkout(pool: pool)

        if session.worker_pid == first.worker_pid do
          :ok = Session.release(session)
          nil
        else
          session
        end
      end)

    assert second, "no session landed on the pool's second worker"
    {first, second}
  end

  defp assert_refused(outcome, id) do
    assert %{"refused" => message, "elixir_type" => "SnakeBridge"} = outcome
    assert message =~ "the Elixir function #{id} is unknown on this worker"
  end

  test "a worker calling ids it was not given (guessed, another worker's, another pool's, another pool's tool) is refused, and the victim's functions still work",
       %{victim: victim, attacker: attacker} do
    {on_victim, on_other_worker} = sessions_on_two_workers(victim)
    victim_id = hostile("keep", [fn -> @victim_secret end], session: on_victim)
    tool_id = hostile("tool_id", ["vault"], session: on_victim)

    # Another pool's worker, and the victim pool's other worker, each with a function of
    # its own to rewrite. A pool's tools are its own: every worker of that pool (and no
    # other) may call them.
    for {opts, tool_outcome} <- [
          {[pool: attacker], :refused},
          {[session: on_other_worker], %{"returned" => @tool_secret}}
        ] do
      assert [victim_outcome, tool_called] =
               hostile("forge", [fn -> :own end, [victim_id, tool_id]], opts)

      assert_refused(victim_outcome, victim_id)

      if tool_outcome == :refused,
        do: assert_refused(tool_called, tool_id),
        else: assert(tool_called == tool_outcome)

      guessed = hostile("forge_guesses", [fn -> :own end, 16], opts)
      assert length(guessed) == 6 + 16
      for {id, outcome} <- guessed, do: assert_refused(outcome, id)
    end

    # The forgery itself works: on the worker the victim's function was sent to, its id
    # reaches it (a worker is one trust domain; the id is good on its connection).
    assert [%{"returned" => @victim_secret}] =
             hostile("forge", [fn -> :own end, [victim_id]], session: on_victim)

    assert hostile("call_kept", [0], session: on_victim) == %{"returned" => @victim_secret}
    assert call_tool(session: on_victim) == @tool_secret
    assert call_tool(session: on_other_worker) == @tool_secret
  end

  test "a forged release does not end the function it names",
       %{victim: victim, attacker: attacker} do
    {on_victim, on_other_worker} = sessions_on_two_workers(victim)
    victim_id = hostile("keep", [fn -> @victim_secret end], session: on_victim)
    tool_id = hostile("tool_id", ["vault"], session: on_victim)

    # Each release reaches the core before the answer of the call that sent it.
    for opts <- [[pool: attacker], [session: on_other_worker]], id <- [victim_id, tool_id] do
      hostile("keep", [fn -> :own end], opts)
      hostile("release_kept_as", [0, id], opts)
    end

    # On the victim's own worker a tool cannot be released either: it lives as long as
    # the worker.
    hostile("keep", [fn -> :own end], session: on_victim)
    hostile("release_kept_as", [1, tool_id], session: on_victim)

    assert hostile("call_kept", [0], session: on_victim) == %{"returned" => @victim_secret}
    assert call_tool(session: on_victim) == @tool_secret
    assert call_tool(session: on_other_worker) == @tool_secret

    # A release from the worker the function was sent to does end it.
    hostile("release_kept_as", [0, victim_id], session: on_victim)
    assert [outcome] = hostile("forge", [fn -> :own end, [victim_id]], session: on_victim)
    assert_refused(outcome, victim_id)
  end

  test "ids are 128 random bits, fresh each time a function is sent", %{attacker: attacker} do
    fun = fn -> :ok end
    ids = for _ <- 1..8, do: hostile("callable_id", [fun], pool: attacker)

    assert Enum.all?(ids, &(&1 =~ ~r/\A[0-9a-f]{32}\z/))
    assert length(Enum.uniq(ids)) == length(ids)

    # Not a counter: no two are anywhere near each other.
    numbers = Enum.map(ids, &String.to_integer(&1, 16))
    for a <- numbers, b <- numbers, a != b, do: assert(abs(a - b) > 2 ** 64)
  end

  test "a function sent with a call, or a stream, ends with it", %{attacker: attacker} do
    before = Callbacks.count()

    assert SnakeBridge.call!("sb_fixtures", "call_with", [fn -> "now" end], [], pool: attacker) ==
             "now"

    id = hostile("keep", [fn -> "later" end], pool: attacker)
    assert eventually(fn -> Callbacks.count() <= before end)
    assert_refused(hostile("call_kept", [0], pool: attacker), id)

    stream = SnakeBridge.stream("builtins", "map", [&(&1 + 1), [1, 2, 3]], [], pool: attacker)
    assert Enum.to_list(stream) == [2, 3, 4]
    assert eventually(fn -> Callbacks.count() <= before end)
  end

  # (A global count: in an async module, other tests' functions come and go meanwhile.)
  test "a function Python keeps in a session can be called later, and is forgotten when Python drops it",
       %{attacker: attacker} do
    before = Callbacks.count()

    Session.with_session([pool: attacker], fn session ->
      opts = [session: session]
      SnakeBridge.call!("sb_fixtures", "keep", [fn x -> x * 3 end], [], opts)
      assert SnakeBridge.call!("sb_fixtures", "call_kept", [0, 5], [], opts) == 15
      assert Callbacks.count() >= before + 1

      SnakeBridge.call!("sb_fixtures", "forget_kept", [], [], opts)
      assert eventually(fn -> Callbacks.count() <= before end)
    end)
  end

  test "a function sent in a session lives until the session ends", %{attacker: attacker} do
    before = Callbacks.count()
    {:ok, session} = Session.checkout(pool: attacker)
    id = hostile("keep", [&(&1 * 2)], session: session)

    assert hostile("call_kept", [0, 21], session: session) == %{"returned" => 42}
    assert hostile("call_kept", [0, 4], pool: attacker) == %{"returned" => 8}
    assert Callbacks.count() >= before + 1

    :ok = Session.release(session)
    assert eventually(fn -> Callbacks.count() <= before end)
    assert_refused(hostile("call_kept", [0, 21], pool: attacker), id)
  end

  test "a worker that dies takes its functions with it; its replacement gets the pool's tools",
       %{victim: victim} do
    before = Callbacks.count()
    {:ok, session} = Session.checkout(pool: victim)
    for n <- 1..3, do: hostile("keep", [fn -> n end], session: session)
    assert Callbacks.count() >= before + 3

    assert {:error, %Error{reason: :worker_crashed}} =
             SnakeBridge.call("sb_fixtures", "die", [], [], session: session)

    assert eventually(fn -> Callbacks.count() <= before end)

    assert eventually(
             fn ->
               pids = Enum.map(SnakeBridge.Pool.workers(victim), & &1.pid)
               length(pids) == 2 and session.worker_pid not in pids
             end,
             10_000
           )

    {:ok, results} = SnakeBridge.broadcast("sb_fixtures", "call_tool", ["vault"], [], pool: victim)
    assert Map.values(results) == [@tool_secret, @tool_secret]
  end
end
