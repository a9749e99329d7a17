import Config

if config_env() == :test do
  # The end-to-end tests call helpers from test/support/python as well as the stdlib.
  config :snakebridge,
    pool: [python_path: [Path.expand("../test/support/python", __DIR__)], size: 2],
    # `SNAKEBRIDGE_CARRIER=grpc mix test` runs every pool of the suite on gRPC.
    carrier: if(System.get_env("SNAKEBRIDGE_CARRIER") == "grpc", do: :grpc, else: :local)
end
