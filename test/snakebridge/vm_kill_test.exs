defmodule SnakeBridge.VMKillTest do
  # A VM killed with SIGKILL runs no cleanup code at all: its workers must die anyway
  # (PR_SET_PDEATHSIG, stdin EOF and a watch on the parent pid, in the worker).
  use ExUnit.Case, async: true

  @rounds 20

  # Started in a fresh VM with this build's code paths: a pool of two workers, whose OS
  # pids it prints.
  @script """
  {:ok, _} = SnakeBridge.Pool.start_link(name: :vm_kill, size: 2, python: System.fetch_env!("SB_PYTHON"))
  IO.puts("WORKERS " <> Enum.map_join(SnakeBridge.Pool.workers(:vm_kill), " ", & &1.pid))
  Process.sleep(:infinity)
  """

  test "no worker outlives a VM killed with SIGKILL (#{@rounds} times in a row)" do
    for round <- 1..@rounds do
      {vm, workers} = start_vm()
      assert length(workers) == 2
      assert Enum.all?(workers, &running?/1)

      System.cmd("kill", ["-9", "#{vm}"])
      deadline = System.monotonic_time(:millisecond) + 2_000

      survivors =
        Stream.repeatedly(fn ->
          Process.sleep(20)
          Enum.filter(workers, &running?/1)
        end)
        |> Enum.find(fn left -> left == [] or System.monotonic_time(:millisecond) > deadline end)

      assert survivors == [], "round #{round}: workers #{inspect(survivors)} outlived the VM"
    end
  end

  defp start_vm do
    paths =
      for path <- :code.get_path(),
          path = to_string(path),
          String.contains?(path, "_build"),
          arg <- ["-pa", path],
          do: arg

    port =
      Port.open({:spawn_executable, System.find_executable("elixir")}, [
        :binary,
        :exit_status,
        {:line, 4096},
        {:env, [{~c"SB_PYTHON", String.to_charlist(elem(SnakeBridge.Python.resolve(), 0))}]},
        args: paths ++ ["-e", @script]
      ])

    {:os_pid, vm} = Port.info(port, :os_pid)
    {vm, read_workers(port)}
  end

  defp read_workers(port) do
    receive do
      {^port, {:data, {:eol, "WORKERS " <> pids}}} ->
        pids |> String.split() |> Enum.map(&String.to_integer/1)

      {^port, {:data, _other}} ->
        read_workers(port)

      {^port, {:exit_status, status}} ->
        flunk("the VM exited with status #{status} before its pool started")
    after
      30_000 -> flunk("the VM's pool did not start within 30 s")
    end
  end

  # A process that is gone, or a zombie waiting to be reaped, is not running.
  defp running?(os_pid) do
    case File.read("/proc/#{os_pid}/stat") do
      {:ok, stat} ->
        # The state follows the parenthesised command name.
        [_, after_name] = String.split(stat, ") ", parts: 2)
        not String.starts_with?(after_name, ["Z", "X"])

      {:error, _} ->
        false
    end
  end
end
