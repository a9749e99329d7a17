[
  inputs: ["{mix,.formatter}.exs", "native/*.exs", "{config,lib,test,bench,examples}/**/*.{ex,exs}"],
  line_length: 100
]
