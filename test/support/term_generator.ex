defmodule SnakeBridge.TermGenerator do
  @moduledoc false
  # Random Elixir terms from a seed, for property tests without StreamData: every row of
  # the value table, with the awkward cases (atoms with odd names, integers of ±2^200,
  # non-UTF-8 binaries, dates Python cannot hold, map keys of every kind), nested in lists,
  # tuples, maps and sets; and now and then one part that cannot cross (a pid, reference,
  # port, improper list, bitstring or unknown struct), with the path to it.
  #
  # Map keys and set elements never collide in Python (`1`, `1.0` and `true` are one key
  # there; so are `:a` and `"a"`), so that what comes back can be predicted.

  @odd_atoms [
    :hello,
    :"🐍",
    :日本語,
    :"with space",
    :ünïcode,
    :"",
    :"Elixir.Foo",
    :"ÿ\u00A0§",
    :"a\nb",
    :"\"quoted\"",
    :"[0]",
    :"x:y",
    :"#{String.duplicate("a", 255)}"
  ]

  @chars [?a, ?Z, ?0, ?\s, ?é, ?ü, ?🐍, ?日, 0, ?\n, ?", ?\\, 0x202E, 0xFEFF, 0x301, 0x10FFFF]

  @invalid_utf8 [
    <<0xFF>>,
    <<0xC0, 0x80>>,
    <<0xED, 0xA0, 0x80>>,
    <<0xF0, 0x9F, 0x90>>,
    "abc" <> <<0xFE>>
  ]

  @floats [0.0, -0.0, 1.5, -2.5e-3, 1.0e308, -1.0e308, 5.0e-324, 2.2250738585072014e-308, 1.0e21]

  @doc """
  `count` terms from `seed`: `{term, bad}` where `bad` is `nil`, or `{path, message}` for
  the one part that cannot cross (`path` in access syntax below the term, e.g.
  `"[1][:opts]"`, and the refusal's message).
  """
  @spec generate(integer(), pos_integer()) :: [{term(), nil | {String.t(), String.t()}}]
  def generate(seed, count) do
    :rand.seed(:exsss, {seed, seed * 31 + 7, seed * 131 + 11})

    for _ <- 1..count do
      term = term(3)

      if :rand.uniform(4) == 1 do
        {bad, message} = bad()
        {term, path} = inject(term, bad)
        {term, {Enum.join(path), message}}
      else
        {term, nil}
      end
    end
  end

  defp pick(list), do: Enum.at(list, :rand.uniform(length(list)) - 1)

  # A term nested at most `depth` more levels.
  defp term(depth) do
    if depth == 0 or :rand.uniform(3) == 1, do: leaf(), else: container(depth - 1)
  end

  defp container(depth) do
    n = :rand.uniform(5) - 1

    case :rand.uniform(5) do
      1 -> for _ <- 1..n//1, do: term(depth)
      2 -> List.to_tuple(for _ <- 1..n//1, do: term(depth))
      3 -> map(n, depth)
      4 -> MapSet.new(distinct(n, &key/0))
      5 -> [term(depth) | for(_ <- 1..n//1, do: leaf())]
    end
  end

  defp map(n, depth) do
    keys = distinct(n, &key/0)
    # Now and then a key Python cannot hash: comes back from Python as an error.
    keys = if :rand.uniform(30) == 1, do: [[unhashable: 1] | keys], else: keys
    Map.new(keys, &{&1, term(depth)})
  end

  # `n` keys at most, none equal to another in Python.
  defp distinct(n, fun) do
    for(_ <- 1..n//1, do: fun.()) |> Enum.uniq_by(&python_key/1)
  end

  defp key do
    case :rand.uniform(8) do
      1 -> pick(@odd_atoms)
      2 -> integer()
      3 -> pick([1.5, -2.5e-3, 1.0e-300])
      4 -> string()
      5 -> {pick(@odd_atoms), integer()}
      6 -> date()
      7 -> pick([nil, true, false])
      8 -> %SnakeBridge.Bytes{data: pick(@invalid_utf8)}
    end
  end

  # What a key is in Python, for equality: numbers by value, atoms and bytes as text.
  defp python_key(true), do: 1
  defp python_key(false), do: 0
  defp python_key(nil), do: nil
  defp python_key(atom) when is_atom(atom), do: Atom.to_string(atom)
  defp python_key(f) when is_float(f) and f == trunc(f), do: trunc(f)
  defp python_key(%SnakeBridge.Bytes{data: data}), do: data

  defp python_key(tuple) when is_tuple(tuple),
    do: tuple |> Tuple.to_list() |> Enum.map(&python_key/1)

  defp python_key(other), do: other

  defp leaf do
    case :rand.uniform(14) do
      1 -> pick([nil, true, false, :nan, :infinity, :neg_infinity])
      2 -> pick(@odd_atoms)
      3 -> integer()
      4 -> integer()
      5 -> float()
      6 -> string()
      7 -> binary()
      8 -> %SnakeBridge.Bytes{data: pick([string(), binary()])}
      9 -> date()
      10 -> time()
      11 -> datetime()
      12 -> pick([&String.upcase/1, fn x -> x end, {String, :upcase, 1}])
      13 -> tensor()
      14 -> pick([:binary.copy(<<0xFF, 1>>, 40_000), String.duplicate("é", 40_000)])
    end
  end

  defp integer do
    sign = pick([1, -1])

    case :rand.uniform(4) do
      1 -> :rand.uniform(200) - 100
      2 -> sign * pick([2 ** 63 - 1, 2 ** 63, 2 ** 63 + 1, 2 ** 64, 2 ** 200, 2 ** 1000])
      _ -> sign * :rand.uniform(2 ** :rand.uniform(300))
    end
  end

  defp float do
    if :rand.uniform(3) == 1,
      do: pick(@floats),
      else: (:rand.uniform() - 0.5) * :math.pow(10, :rand.uniform(600) - 300)
  end

  defp string, do: for(_ <- 1..:rand.uniform(12), into: "", do: <<pick(@chars)::utf8>>)

  defp binary do
    if :rand.uniform(2) == 1,
      do: pick(@invalid_utf8),
      else: :crypto.strong_rand_bytes(:rand.uniform(20))
  end

  # Python's dates run from year 1 to 9999: others come back as an error from Python.
  defp date do
    year = if :rand.uniform(12) == 1, do: pick([0, -5, -9999]), else: :rand.uniform(9999)
    Date.new!(year, :rand.uniform(12), :rand.uniform(28))
  end

  defp time do
    precision = pick([0, 3, 6])
    us = if precision == 0, do: 0, else: :rand.uniform(999_999)
    Time.new!(:rand.uniform(24) - 1, :rand.uniform(60) - 1, :rand.uniform(60) - 1, {us, precision})
  end

  defp datetime do
    if :rand.uniform(2) == 1 do
      NaiveDateTime.new!(date(), time())
    else
      # 1899 to 2041, UTC.
      DateTime.from_unix!(:rand.uniform(2 ** 52) - 2 ** 51, :microsecond)
    end
  end

  defp tensor do
    {type, size} = pick([{{:u, 8}, 1}, {{:s, 64}, 8}, {{:f, 32}, 4}, {{:f, 64}, 8}])
    shape = List.to_tuple(for _ <- 1..(:rand.uniform(3) - 1)//1, do: :rand.uniform(3))
    n = Enum.reduce(Tuple.to_list(shape), 1, &(&1 * &2))
    data = for _ <- 1..(n * size)//1, into: <<>>, do: <<:rand.uniform(256) - 1>>
    SnakeBridge.Tensor.new(data, type, shape)
  end

  # A part that cannot cross, and the message refusing it.
  defp bad do
    pick([
      {self(), "a pid cannot be sent to Python"},
      {make_ref(), "a reference cannot be sent to Python"},
      {hd(Port.list()), "a port cannot be sent to Python"},
      {[1, "x" | :tail], "an improper list cannot be sent to Python"},
      {<<1::3>>, "a bitstring that is not a whole number of bytes"},
      {%URI{}, "struct %URI{} cannot be sent to Python"}
    ])
  end

  # Puts `bad` somewhere in `term` (in a list, tuple or map value, or as the term itself):
  # the new term and the path to `bad`.
  defp inject(term, bad) do
    case children(term) do
      [] ->
        {bad, []}

      children ->
        if :rand.uniform(3) == 1 do
          {bad, []}
        else
          {segment, child, rebuild} = pick(children)
          {child, path} = inject(child, bad)
          {rebuild.(child), [segment | path]}
        end
    end
  end

  defp children(list) when is_list(list) and list != [] do
    if List.improper?(list),
      do: [],
      else:
        for({item, i} <- Enum.with_index(list), do: {"[#{i}]", item, &List.replace_at(list, i, &1)})
  end

  defp children(tuple) when is_tuple(tuple) do
    for {item, i} <- Enum.with_index(Tuple.to_list(tuple)),
        do: {"[#{i}]", item, &put_elem(tuple, i, &1)}
  end

  defp children(map) when is_map(map) and not is_struct(map) do
    for {key, value} <- map,
        segment = segment(key),
        segment != nil,
        do: {segment, value, &Map.put(map, key, &1)}
  end

  defp children(_leaf), do: []

  # A map key as an error's path shows it (`:name`, `"text"`, `12`), for the keys whose
  # rendering is plain.
  defp segment(atom) when is_atom(atom) and atom not in [nil, true, false],
    do: "[:#{atom}]"

  defp segment(n) when is_integer(n) and n in -0x8000000000000000..0x7FFFFFFFFFFFFFFF,
    do: "[#{n}]"

  defp segment(text) when is_binary(text) do
    if text =~ ~r/^[a-zA-Z0-9 ]*$/, do: ~s([#{inspect(text)}]), else: nil
  end

  defp segment(_other), do: nil
end
