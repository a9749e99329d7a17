# Codec benchmark, BEAM side: encoding and decoding a 1M-element mixed term with the core's
# codecs (`SnakeBridge.TypeConverter`, Rust, on a dirty CPU scheduler) beside baselines
# measured in the same run:
#   * term_to_binary - `:erlang.term_to_binary/1` + `:erlang.binary_to_term/1` (the BEAM's
#                      own external term format, written in C inside the VM)
#   * jiffy          - `:jiffy.encode/1` + `:jiffy.decode(_, [:return_maps])` (a C JSON
#                      NIF), from Debian's `erlang-jiffy`; its rows are skipped without it
#
# The term is JSON-safe (string keys, no tuples, no nil), so every codec must give it back
# exactly. Run with `make bench`. Every figure is the median of several rounds, the codecs
# alternating within a round and the heap collected between timings; MB/s is 10^6 encoded
# bytes per second. Nothing here fails on a number.

Code.require_file("support.exs", __DIR__)

defmodule CodecBench do
  @rounds String.to_integer(System.get_env("BENCH_ROUNDS", "7"))
  @n String.to_integer(System.get_env("BENCH_CODEC_ELEMENTS", "1000000"))

  def run do
    jiffy? = load_jiffy()
    term = term(@n)
    codecs = codecs(jiffy?)

    IO.puts(
      "SnakeBridge codec benchmark: #{@rounds} rounds, a #{@n}-element mixed list " <>
        "(maps with string keys, floats, strings, small lists), " <>
        Enum.map_join(codecs, ", ", &elem(&1, 0))
    )

    # Once, untimed: warms every codec up and checks that it gives the term back.
    for {name, encode, decode} <- codecs do
      encoded = encode.(term)

      unless decode.(encoded) === term do
        IO.puts("WARNING: #{name} does not give the term back: its figures are suspect")
      end
    end

    :erlang.garbage_collect()

    rounds =
      for round <- 1..@rounds do
        IO.puts("round #{round}/#{@rounds} ...")

        Map.new(rotate(codecs, round), fn {name, encode, decode} ->
          {name, measure(term, encode, decode)}
        end)
      end

    report(rounds, Enum.map(codecs, &elem(&1, 0)))
  end

  # Every fourth element is a map, then a float, a string and a small list.
  defp term(n) do
    for i <- 0..(n - 1) do
      case rem(i, 4) do
        0 -> %{"id" => i, "name" => "item-#{i}", "score" => i * 0.5, "tags" => ["a", "b"]}
        1 -> i * 1.25
        2 -> "string-#{i}"
        3 -> [i, "x", true]
      end
    end
  end

  defp load_jiffy do
    Path.wildcard("/usr/lib/erlang/lib/jiffy-*/ebin") |> Enum.each(&Code.prepend_path/1)

    if Code.ensure_loaded?(:jiffy) do
      true
    else
      IO.puts(
        "note: jiffy is not available (install Debian's 'erlang-jiffy'): its rows are skipped"
      )

      false
    end
  end

  # {name, encode, decode}; encode returns the bytes decode takes.
  defp codecs(jiffy?) do
    ours = [
      {"snakebridge_msgpack", &encode!(&1, :msgpack), &decode!(&1, :msgpack)},
      {"snakebridge_json", &encode!(&1, :json), &decode!(&1, :json)},
      {"term_to_binary", &:erlang.term_to_binary/1, &:erlang.binary_to_term/1}
    ]

    if jiffy?,
      do: ours ++ [{"jiffy", &:jiffy.encode/1, &:jiffy.decode(&1, [:return_maps])}],
      else: ours
  end

  defp encode!(term, codec) do
    {:ok, binary} = SnakeBridge.TypeConverter.to_python(term, codec)
    binary
  end

  defp decode!(binary, codec) do
    {:ok, term} = SnakeBridge.TypeConverter.from_python(binary, codec)
    term
  end

  # A different codec goes first in each round.
  defp rotate(list, round) do
    {a, b} = Enum.split(list, rem(round, length(list)))
    b ++ a
  end

  defp measure(term, encode, decode) do
    :erlang.garbage_collect()
    t0 = System.monotonic_time(:nanosecond)
    encoded = encode.(term)
    t1 = System.monotonic_time(:nanosecond)
    :erlang.garbage_collect()
    t2 = System.monotonic_time(:nanosecond)
    _ = decode.(encoded)
    t3 = System.monotonic_time(:nanosecond)
    # jiffy may return iodata rather than one binary.
    bytes = :erlang.iolist_size(encoded)
    :erlang.garbage_collect()

    %{"encode_s" => (t1 - t0) / 1.0e9, "decode_s" => (t3 - t2) / 1.0e9, "bytes" => bytes}
  end

  defp report(rounds, names) do
    med = Bench.medians(rounds, ["encode_s", "decode_s", "bytes"])

    rows =
      for name <- names do
        %{"encode_s" => enc, "decode_s" => dec, "bytes" => bytes} = med[name]

        {name,
         %{
           "encode_ms" => enc * 1000,
           "decode_ms" => dec * 1000,
           "bytes" => bytes,
           "encode_mb_s" => bytes / enc / 1.0e6,
           "decode_mb_s" => bytes / dec / 1.0e6
         }}
      end

    IO.puts("\nmedians over #{length(rounds)} rounds (MB/s: encoded bytes per second)")

    Bench.table(rows, [
      {"encode_ms", "encode ms"},
      {"decode_ms", "decode ms"},
      {"bytes", "bytes"},
      {"encode_mb_s", "encode MB/s"},
      {"decode_mb_s", "decode MB/s"}
    ])

    IO.puts("\nspeed relative to same-run baselines (baseline time / ours; > 1 is faster)")

    IO.puts(
      String.pad_trailing("", 24) <>
        Enum.map_join(
          ["enc vs jiffy", "dec vs jiffy", "enc vs t2b", "dec vs t2b"],
          &String.pad_leading(&1, 14)
        ) <> "   target"
    )

    for name <- ["snakebridge_msgpack", "snakebridge_json"] do
      ours = med[name]
      jiffy = med["jiffy"]
      t2b = med["term_to_binary"]

      cells = [
        speed(jiffy, ours, "encode_s"),
        speed(jiffy, ours, "decode_s"),
        speed(t2b, ours, "encode_s"),
        speed(t2b, ours, "decode_s")
      ]

      IO.puts(
        String.pad_trailing(name, 24) <>
          Enum.map_join(cells, &String.pad_leading(&1, 14)) <>
          "   >= 1.00x vs jiffy, both ways"
      )
    end

    unless med["jiffy"], do: IO.puts("(jiffy not available: its ratios are n/a)")
  end

  defp speed(nil, _, _), do: "n/a"
  defp speed(base, ours, key), do: Bench.ratio(base[key], ours[key]) <> "x"
end

CodecBench.run()
