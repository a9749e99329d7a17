# Prints the files SnakeBridge's Hex package holds, one per line, relative to the project
# root: `package[:files]` expanded as `mix hex.build` expands it (wildcards, directories
# recursively, regular files only), minus `package[:exclude_patterns]`.
#
#     mix run --no-compile --no-start test/support/package_files.exs
package = Mix.Project.config()[:package]
root = File.cwd!()
excludes = package[:exclude_patterns] || []

expand = fn path ->
  if File.dir?(path), do: Path.wildcard(Path.join(path, "**"), match_dot: true), else: [path]
end

package[:files]
|> Enum.flat_map(&Path.wildcard(Path.join(root, &1), match_dot: true))
|> Enum.flat_map(expand)
|> Enum.filter(&File.regular?/1)
|> Enum.map(&Path.relative_to(Path.expand(&1), root))
|> Enum.uniq()
|> Enum.reject(fn path -> Enum.any?(excludes, &(path =~ &1)) end)
|> Enum.sort()
|> Enum.each(&IO.puts/1)
