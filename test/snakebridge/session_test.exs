defmodule SnakeBridge.SessionTest do
  use ExUnit.Case, async: true

  import SnakeBridge.Eventually

  alias SnakeBridge.{Error, Ref, Session, TestPool}

  setup do
    name = :"session_#{System.unique_integer([:positive])}"
    start_supervised!({TestPool, name: name, size: 2})
    %{pool: name}
  end

  defp registry_sizes(pool) do
    # One call per worker: a session pins to one of them.
    Session.with_session([pool: pool], fn a ->
      Session.with_session([pool: pool], fn b ->
        Enum.map(Enum.uniq_by([a, b], & &1.worker_pid), fn s ->
          SnakeBridge.call!("snakebridge_agent.registry", "size", [], [], session: s)
        end)
      end)
    end)
  end

  test "calls in a session all run on its worker", %{pool: pool} do
    Session.with_session([pool: pool], fn session ->
      pids = for _ <- 1..20, do: SnakeBridge.call!("sb_fixtures", "pid", [], [], session: session)
      assert Enum.uniq(pids) == [session.worker_pid]
    end)
  end

  test "releasing a session frees every object created in it", %{pool: pool} do
    {:ok, session} = Session.checkout(pool: pool)
    baseline = SnakeBridge.call!("snakebridge_agent.registry", "size", [], [], session: session)

    refs =
      for _ <- 1..3, do: SnakeBridge.call!("sb_fixtures", "unsendable", [], [], session: session)

    kept = SnakeBridge.call!("sb_fixtures", "unsendable", [], [], pool: pool)

    assert SnakeBridge.call!("snakebridge_agent.registry", "size", [], [], session: session) >=
             baseline + 3

    :ok = Session.release(session)
    refute Session.alive?(session)

    assert {:error, %Error{reason: :stale_ref}} =
             SnakeBridge.call("sb_fixtures", "pid", [], [], session: session)

    # The session's objects are gone in Python; a reference outside the session lives on.
    assert eventually(fn ->
             match?(
               {:error, %Error{reason: :stale_ref}},
               SnakeBridge.call("builtins", "id", [hd(refs)], [], pool: pool)
             )
           end)

    assert {:ok, _} = SnakeBridge.call("builtins", "id", [kept], [], pool: pool)
    assert %Ref{} = kept
  end

  test "objects an Elixir function receives from Python in a session belong to the session",
       %{pool: pool} do
    parent = self()

    received =
      Session.with_session([pool: pool], fn session ->
        {:ok, object} = SnakeBridge.call("sb_fixtures", "unsendable", [], [], session: session)

        # Python hands the object to the Elixir function: a reference made during the
        # session's call, so in the session.
        {:ok, "ok"} =
          SnakeBridge.call(
            "sb_fixtures",
            "call_with",
            [fn x -> send(parent, {:got, x}) && :ok end, object],
            [],
            session: session
          )

        assert_receive {:got, %Ref{} = received}
        assert Ref.alive?(received)
        received
      end)

    # The release reaches the worker in its next batch.
    assert eventually(fn ->
             match?(
               {:error, %Error{reason: :stale_ref}},
               SnakeBridge.call("builtins", "repr", [received], [], pool: pool)
             )
           end)
  end

  test "a session ends when its owner process exits", %{pool: pool} do
    baseline = Enum.sum(registry_sizes(pool))
    parent = self()

    owner =
      spawn(fn ->
        {:ok, session} = Session.checkout(pool: pool)
        for _ <- 1..5, do: SnakeBridge.call!("sb_fixtures", "unsendable", [], [], session: session)
        send(parent, {:ready, self()})
        Process.sleep(:infinity)
      end)

    assert_receive {:ready, ^owner}, 5_000
    assert Map.get(Session.Manager.counts(), owner) == 1
    Process.exit(owner, :kill)

    assert eventually(fn -> not Map.has_key?(Session.Manager.counts(), owner) end)
    assert eventually(fn -> Enum.sum(registry_sizes(pool)) <= baseline end)
  end

  test "with_session releases the session even when the function raises", %{pool: pool} do
    parent = self()

    assert_raise RuntimeError, fn ->
      Session.with_session([pool: pool], fn session ->
        send(parent, {:session, session})
        raise "boom"
      end)
    end

    assert_received {:session, session}
    refute Session.alive?(session)
  end

  test "a session on a worker that died is stale", %{pool: pool} do
    {:ok, session} = Session.checkout(pool: pool)

    assert {:error, %Error{reason: :worker_crashed}} =
             SnakeBridge.call("sb_fixtures", "die", [], [], session: session)

    assert {:error, %Error{reason: :stale_ref, message: message}} =
             SnakeBridge.call("sb_fixtures", "pid", [], [], session: session)

    assert message =~ "died"
  end

  test "checkout, return and timeout emit telemetry", %{pool: pool} do
    parent = self()
    id = make_ref()

    for event <- [:checkout, :return, :timeout] do
      :telemetry.attach(
        {id, event},
        [:snakebridge, :session, event],
        fn name, m, meta, _ ->
          send(parent, {:event, name, m, meta})
        end,
        nil
      )
    end

    on_exit(fn -> for e <- [:checkout, :return, :timeout], do: :telemetry.detach({id, e}) end)

    {:ok, session} = Session.checkout(pool: pool)
    # One id for a session: the core's, which its worker tags the session's objects with.
    assert session.id =~ ~r/^[0-9a-f]{24}$/
    id = session.id

    assert_received {:event, [:snakebridge, :session, :checkout], %{duration: _},
                     %{pool: ^pool, session_id: ^id}}

    Session.release(session)
    assert_received {:event, [:snakebridge, :session, :return], _, %{pool: ^pool, session_id: ^id}}

    assert {:error, %Error{reason: :no_pool}} = Session.checkout(pool: :no_such_pool)
  end
end
