from runtime.command import run

run()
