def check_generated_source(source: str) -> None:
    pass
