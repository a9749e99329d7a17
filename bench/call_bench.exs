# Call-path benchmark: a full SnakeBridge call (NIF, codec, carrier, Python dispatch)
# beside baselines measured in the same run:
#   * raw_socket  - Rust <-> Python echo loop over a Unix socket (the transport's floor)
#   * grpcio_echo - tonic client -> plain grpcio Python server (a pure-Python gRPC worker)
#   * erlang_port - an Elixir `Port` with `{:packet, 4}` to a short Python script that
#                   answers operator.add (the cheapest bridge a user could write by hand;
#                   bench/python/port_add.py), one port per worker, callers queued FIFO
# SnakeBridge runs on the local carrier with the default 4 threads per worker
# (snakebridge_default), with 1 thread (snakebridge_serial), and on gRPC
# (snakebridge_grpc), all calling operator.add.
#
# Run with `make bench`. The machine is shared and noisy: every figure is the median of
# several alternating rounds, and the table quotes ratios to the same-run baselines.
# Nothing here fails on a number. The VM runs with its default scheduler busy wait, as in
# production (`make test` passes +sbwt none, which adds about 70 µs to a call's p50
# here: the scheduler that gets the reply is asleep).

Code.require_file("support.exs", __DIR__)

defmodule CallBench do
  @rounds String.to_integer(System.get_env("BENCH_ROUNDS", "3"))
  @sequential String.to_integer(System.get_env("BENCH_SEQUENTIAL", "5000"))
  @concurrent String.to_integer(System.get_env("BENCH_CONCURRENT", "20000"))
  @callers 64
  @workers 2

  def run do
    Bench.start()
    baselines = Path.expand("../_build/cargo/release/baselines", __DIR__)
    python = elem(SnakeBridge.Python.resolve(), 0)

    IO.puts(
      "SnakeBridge call benchmark: #{@rounds} rounds, #{@sequential} sequential calls, " <>
        "#{@concurrent} calls from #{@callers} callers over #{@workers} workers"
    )

    rounds =
      for round <- 1..@rounds do
        IO.puts("round #{round}/#{@rounds} ...")

        base =
          baseline(baselines, python, "raw-socket") ++
            baseline(baselines, python, "grpcio-echo") ++ erlang_port(python)

        sb =
          snakebridge(:snakebridge_default, threads: 4) ++
            snakebridge(:snakebridge_serial, threads: 1) ++
            snakebridge(:snakebridge_grpc, threads: 4, carrier: :grpc)

        Map.new(base ++ sb)
      end

    report(rounds)
  end

  defp baseline(binary, python, mode) do
    args = [
      mode,
      "--calls",
      "#{@concurrent}",
      "--concurrency",
      "#{@callers}",
      "--workers",
      "#{@workers}",
      "--python",
      python
    ]

    {out, 0} = System.cmd(binary, args)

    for line <- String.split(out, "\n", trim: true), String.starts_with?(line, "{") do
      [_, name] = Regex.run(~r/"name":\s*"([^"]+)"/, line)

      fields =
        for key <- ["p50_us", "p99_us", "throughput_per_s"], into: %{} do
          case Regex.run(~r/"#{key}":\s*([0-9.eE+-]+)/, line) do
            [_, v] -> {key, elem(Float.parse(v), 0)}
            nil -> {key, nil}
          end
        end

      {name, fields}
    end
  end

  defp snakebridge(name, opts) do
    {:ok, pool} = SnakeBridge.Pool.start_link([name: name, size: @workers] ++ opts)
    call = fn -> {:ok, 3} = SnakeBridge.call("operator", "add", [1, 2], [], pool: name) end
    rows = measure(name, call)
    GenServer.stop(pool)
    rows
  end

  defp erlang_port(python) do
    script = Path.expand("python/port_add.py", __DIR__)
    ports = for _ <- 1..@workers, do: PortAdd.start(python, script)
    counter = :atomics.new(1, [])

    call = fn ->
      i = :atomics.add_get(counter, 1, 1)
      3 = PortAdd.add(Enum.at(ports, rem(i, @workers)), 1, 2)
    end

    rows = measure(:erlang_port, call)
    Enum.each(ports, &GenServer.stop/1)
    rows
  end

  defp measure(name, call) do
    for _ <- 1..1_000, do: call.()

    samples = Bench.latencies(@sequential, call)
    throughput = Bench.throughput(call, @concurrent, @callers)

    [
      {"#{name}_sequential",
       %{
         "p50_us" => Bench.percentile(samples, 0.50),
         "p99_us" => Bench.percentile(samples, 0.99),
         "throughput_per_s" => nil
       }},
      {"#{name}_concurrent", %{"p50_us" => nil, "p99_us" => nil, "throughput_per_s" => throughput}}
    ]
  end

  defp report(rounds) do
    med = Bench.medians(rounds, ["p50_us", "p99_us", "throughput_per_s"])
    IO.puts("\nmedians over #{length(rounds)} rounds")

    Bench.table(Enum.sort(med), [
      {"p50_us", "p50 µs"},
      {"p99_us", "p99 µs"},
      {"throughput_per_s", "calls/s"}
    ])

    raw = med["raw_socket_sequential"]["p50_us"]
    raw_tp = med["raw_socket_concurrent"]["throughput_per_s"]
    grpcio = med["grpcio_echo_sequential"]["p50_us"]
    grpcio_tp = med["grpcio_echo_concurrent"]["throughput_per_s"]
    port = med["erlang_port_sequential"]["p50_us"]
    port_tp = med["erlang_port_concurrent"]["throughput_per_s"]
    sb = med["snakebridge_default_sequential"]["p50_us"]
    sb_p99 = med["snakebridge_default_sequential"]["p99_us"]
    sb_tp = med["snakebridge_default_concurrent"]["throughput_per_s"]
    grpc = med["snakebridge_grpc_sequential"]["p50_us"]

    IO.puts("""

    SnakeBridge call p50 / raw-socket p50:          #{Bench.ratio(sb, raw)}x   (target <= 1.5x)
    SnakeBridge call p99 / raw-socket p50:          #{Bench.ratio(sb_p99, raw)}x   (target <= 3x)
    SnakeBridge calls/s / raw-socket calls/s:       #{Bench.ratio(sb_tp, raw_tp)}x   (target >= 0.5x)
    SnakeBridge call p50 / Erlang port p50:         #{Bench.ratio(sb, port)}x   (target < 1x)
    SnakeBridge calls/s / Erlang port calls/s:      #{Bench.ratio(sb_tp, port_tp)}x   (target > 1x)
    SnakeBridge call p50 / grpcio echo p50:         #{Bench.ratio(sb, grpcio)}x   (target well below 1x)
    SnakeBridge calls/s / grpcio echo calls/s:      #{Bench.ratio(sb_tp, grpcio_tp)}x   (target >= 5x)
    local carrier p50 / gRPC carrier p50:           #{Bench.ratio(sb, grpc)}x   (the carrier's share)
    """)
  end
end

defmodule PortAdd do
  @moduledoc false
  # One Erlang port to bench/python/port_add.py, owned by a GenServer that answers its
  # callers in the order they asked (the port answers in order).
  use GenServer

  def start(python, script) do
    {:ok, pid} = GenServer.start_link(__MODULE__, {python, script})
    pid
  end

  def add(server, a, b), do: GenServer.call(server, {:add, a, b}, :infinity)

  @impl true
  def init({python, script}) do
    port =
      Port.open({:spawn_executable, python}, [
        :binary,
        {:packet, 4},
        :exit_status,
        args: ["-u", script]
      ])

    {:ok, {port, :queue.new()}}
  end

  @impl true
  def handle_call({:add, a, b}, from, {port, waiting}) do
    Port.command(port, <<a::signed-64, b::signed-64>>)
    {:noreply, {port, :queue.in(from, waiting)}}
  end

  @impl true
  def handle_info({port, {:data, <<sum::signed-64>>}}, {port, waiting}) do
    {{:value, from}, waiting} = :queue.out(waiting)
    GenServer.reply(from, sum)
    {:noreply, {port, waiting}}
  end

  def handle_info({port, {:exit_status, status}}, {port, _} = state),
    do: {:stop, {:port_exited, status}, state}

  @impl true
  def terminate(_reason, {port, _}) do
    if Port.info(port), do: Port.close(port)
    :ok
  end
end

CallBench.run()
