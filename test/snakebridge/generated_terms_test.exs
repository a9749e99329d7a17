defmodule SnakeBridge.GeneratedTermsTest do
  @moduledoc """
  Generated terms (`SnakeBridge.TermGenerator`, seeded) cross to Python and back as the
  value table says, or are refused: with `ArgumentError` naming the path of the part that
  cannot cross, or, for what only Python refuses (unhashable keys, dates outside years
  1–9999), with an encoding error naming its path. Without Python, `TypeConverter`
  round-trips them the same way. Every failure names the seed (`SB_TERM_SEED=<n>` runs
  another).
  """
  use ExUnit.Case, async: true

  alias SnakeBridge.{Error, Ref, Tensor, TermGenerator, TestPool, TypeConverter}

  @count 300

  defp terms do
    seed = "SB_TERM_SEED" |> System.get_env("20261125") |> String.to_integer()

    for {{term, bad}, i} <- Enum.with_index(TermGenerator.generate(seed, @count)) do
      {term, bad, "term #{i} of seed #{seed}: #{inspect(term, limit: 8, printable_limit: 40)}"}
    end
  end

  test "each term crosses to Python and back as the value table says, or is refused with its path" do
    # A pool of its own, as other tests kill the default pool's workers now and then;
    # without a shared directory, which TensorTest counts.
    start_supervised!({TestPool, name: :generated_terms, size: 1, shared_memory: false})

    for {term, bad, where} <- terms() do
      result =
        try do
          SnakeBridge.call("sb_fixtures", "echo", [term], [], pool: :generated_terms)
        rescue
          e in ArgumentError -> {:raised, e.message}
        end

      refusals = if bad, do: [], else: python_refusals(term)

      case {bad, refusals, result} do
        {{path, message}, _, {:raised, text}} ->
          assert text =~ "cannot send args[0]#{path} to Python", where
          assert text =~ message, where

        {nil, [_ | _] = refusals, {:error, %Error{reason: :encoding, message: text}}} ->
          assert text =~ "args[0]", where
          assert Enum.any?(refusals, &(text =~ &1)), "#{where}: #{text}"

        {nil, [], {:ok, back}} ->
          assert same?(back, python(term)), "#{where} came back as #{inspect(back)}"

        _ ->
          flunk("#{where}: #{inspect(result, limit: 8)}")
      end
    end
  end

  test "each term round-trips through TypeConverter (msgpack), or is refused with its path" do
    for {term, bad, where} <- terms() do
      case {bad, TypeConverter.to_python(term)} do
        {{path, message}, {:error, text}} ->
          assert text =~ "value#{path}: #{message}", where

        {nil, {:ok, packed}} ->
          assert {:ok, back} = TypeConverter.from_python(packed), where
          assert same?(back, converted(term)), "#{where} came back as #{inspect(back)}"

        {_, result} ->
          flunk("#{where}: #{inspect(result, limit: 8)}")
      end

      # JSON writes exactly what it can say (and refuses the rest, with a reason the term
      # holds), and what it wrote reads back into a term that writes the same text again.
      refusals =
        case bad do
          {_path, message} -> [message | json_refusals(term)]
          nil -> json_refusals(term)
        end

      case {refusals, TypeConverter.to_python(term, :json)} do
        {[], {:ok, json}} ->
          assert {:ok, back} = TypeConverter.from_python(json, :json), where
          assert {:ok, again} = TypeConverter.to_python(back, :json), where
          assert {:ok, back_again} = TypeConverter.from_python(again, :json), where
          assert same?(back_again, back), "#{where}: #{json} came back as #{again}"

        {[_ | _] = refusals, {:error, message}} ->
          assert Enum.any?(refusals, &(message =~ &1)), "#{where}: #{message}"

        {refusals, result} ->
          flunk("#{where}: expected refusals #{inspect(refusals)}, got #{inspect(result)}")
      end
    end
  end

  # What Python gives back for a term (per the value table): atoms as strings (but nil,
  # booleans and the float atoms), bytes as binaries, times at microsecond precision,
  # functions as references to the Python callables standing for them.
  defp python(term) when term in [nil, true, false, :nan, :infinity, :neg_infinity], do: term
  defp python(atom) when is_atom(atom), do: Atom.to_string(atom)
  defp python(%SnakeBridge.Bytes{data: data}), do: data
  defp python(%MapSet{} = set), do: MapSet.new(set, &python/1)
  defp python(%Date{} = date), do: date
  defp python(%Tensor{} = tensor), do: tensor

  defp python(%{microsecond: {us, _}} = time) when is_struct(time),
    do: %{time | microsecond: {us, 6}}

  defp python(fun) when is_function(fun), do: :callable

  defp python(tuple) when is_tuple(tuple) do
    if mfa?(tuple),
      do: :callable,
      else: tuple |> Tuple.to_list() |> Enum.map(&python/1) |> List.to_tuple()
  end

  defp python(list) when is_list(list), do: Enum.map(list, &python/1)
  defp python(map) when is_map(map), do: Map.new(map, fn {k, v} -> {python(k), python(v)} end)
  defp python(other), do: other

  # Without Python, functions (callbacks) decode to nil, like references.
  defp converted(term), do: term |> python() |> uncallable()

  defp uncallable(:callable), do: nil
  defp uncallable(list) when is_list(list), do: Enum.map(list, &uncallable/1)

  defp uncallable(tuple) when is_tuple(tuple),
    do: tuple |> Tuple.to_list() |> Enum.map(&uncallable/1) |> List.to_tuple()

  defp uncallable(map) when is_map(map) and not is_struct(map),
    do: Map.new(map, fn {k, v} -> {k, uncallable(v)} end)

  defp uncallable(other), do: other

  # `{Module, :function, arity}` with an Elixir module: a function, not data.
  defp mfa?({module, function, arity}) when is_atom(module) and is_atom(function),
    do:
      is_integer(arity) and arity in 0..255 and
        String.starts_with?(Atom.to_string(module), "Elixir.")

  defp mfa?(_), do: false

  # What Python refuses in a term: keys and set elements it cannot hash, dates out of its
  # range (the start of each refusal's message).
  defp python_refusals(term) do
    term |> refusals() |> Enum.uniq()
  end

  defp refusals(%MapSet{} = set),
    do: Enum.flat_map(set, &(unhashable(&1) ++ refusals(&1)))

  defp refusals(%{year: year} = date) when is_struct(date) and year not in 1..9999,
    do: ["out of range"]

  defp refusals(struct) when is_struct(struct), do: []

  defp refusals(map) when is_map(map),
    do: Enum.flat_map(map, fn {k, v} -> unhashable(k) ++ refusals(k) ++ refusals(v) end)

  defp refusals(list) when is_list(list), do: Enum.flat_map(list, &refusals/1)
  defp refusals(tuple) when is_tuple(tuple), do: tuple |> Tuple.to_list() |> refusals()
  defp refusals(_leaf), do: []

  defp unhashable(key) when is_list(key) or (is_map(key) and not is_struct(key)),
    do: ["unhashable"]

  defp unhashable(%MapSet{}), do: ["unhashable"]
  defp unhashable(_key), do: []

  # What JSON refuses in a term (the start of each refusal's message): NaN and the
  # infinities, callbacks, tensors, integers beyond 2^1023, containers and texts (bytes,
  # dates) as object keys, and nesting deeper than 127 levels.
  @json_depth 127
  @json_int_limit Integer.pow(2, 1023)

  defp json_refusals(term) do
    depth = if json_depth(term) > @json_depth, do: ["JSON may nest at most"], else: []
    Enum.uniq(depth ++ json_value(term))
  end

  defp json_value(atom) when atom in [:nan, :infinity, :neg_infinity], do: ["cannot be written"]
  defp json_value(n) when is_integer(n) and abs(n) >= @json_int_limit, do: ["an integer beyond"]
  defp json_value(fun) when is_function(fun), do: ["a callback cannot"]
  defp json_value(%Tensor{}), do: ["a tensor cannot"]
  defp json_value(%Ref{}), do: ["cannot be written"]
  defp json_value(%MapSet{} = set), do: Enum.flat_map(set, &json_value/1)
  defp json_value(struct) when is_struct(struct), do: []

  defp json_value(map) when is_map(map),
    do: Enum.flat_map(map, fn {k, v} -> json_key(k) ++ json_value(v) end)

  defp json_value(list) when is_list(list), do: Enum.flat_map(elements(list), &json_value/1)

  defp json_value(tuple) when is_tuple(tuple) do
    if mfa?(tuple),
      do: ["a callback cannot"],
      else: tuple |> Tuple.to_list() |> Enum.flat_map(&json_value/1)
  end

  defp json_value(_scalar), do: []

  # Keys: scalars are written as their text (any float, any integer); the rest is refused.
  defp json_key(key) when is_binary(key) do
    if String.valid?(key), do: [], else: ["cannot be a JSON object key"]
  end

  defp json_key(key) when is_atom(key) or is_number(key), do: []

  defp json_key(key) do
    if is_tuple(key) and mfa?(key),
      do: ["a callback cannot"],
      else: ["cannot be a JSON object key"]
  end

  defp json_depth(%MapSet{} = set), do: 1 + max_depth(Enum.to_list(set))
  defp json_depth(struct) when is_struct(struct), do: 0
  defp json_depth(map) when is_map(map), do: 1 + max_depth(Map.keys(map) ++ Map.values(map))
  defp json_depth(list) when is_list(list), do: 1 + max_depth(elements(list))

  defp json_depth(tuple) when is_tuple(tuple),
    do: if(mfa?(tuple), do: 0, else: 1 + max_depth(Tuple.to_list(tuple)))

  defp json_depth(_scalar), do: 0

  # A list's elements, and the tail of an improper one (which only a bad term has).
  defp elements([head | tail]), do: [head | elements(tail)]
  defp elements([]), do: []
  defp elements(tail), do: [tail]

  defp max_depth(terms), do: terms |> Enum.map(&json_depth/1) |> Enum.max(fn -> 0 end)

  # Equality, with `:callable` standing for any reference (to a Python callable).
  defp same?(%Ref{}, :callable), do: true

  defp same?(%Tensor{} = a, %Tensor{} = b),
    do: {a.data, a.type, a.shape} == {b.data, b.type, b.shape}

  defp same?(a, b) when is_float(a) and is_float(b), do: a == b

  defp same?(a, b) when is_list(a) and is_list(b),
    do: length(a) == length(b) and Enum.all?(Enum.zip(a, b), fn {x, y} -> same?(x, y) end)

  defp same?(a, b) when is_tuple(a) and is_tuple(b),
    do: same?(Tuple.to_list(a), Tuple.to_list(b))

  defp same?(a, b) when is_map(a) and is_map(b) and not is_struct(a) and not is_struct(b) do
    Enum.sort(Map.keys(a)) == Enum.sort(Map.keys(b)) and
      Enum.all?(a, fn {k, v} -> same?(v, Map.fetch!(b, k)) end)
  end

  defp same?(a, b), do: a == b
end
