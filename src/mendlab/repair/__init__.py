"""Code self-repair (Olausson et al.): tasks, a real sandbox, repair trees, pass@k and pass@t."""
