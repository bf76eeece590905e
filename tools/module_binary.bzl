"""py_module_binary: a py_binary that runs `python -m <module>`.

Launchers are documented as `.venv/bin/python -m launch.<name>`. Running them as modules
under Bazel too keeps package-relative imports and `__package__` identical; a plain
py_binary would run launch/<name>.py as a top-level script.
"""

def _module_main_impl(ctx):
    ctx.actions.expand_template(
        template = ctx.file._template,
        output = ctx.outputs.out,
        substitutions = {"{MODULE}": ctx.attr.module},
    )

_module_main = rule(
    implementation = _module_main_impl,
    attrs = {
        "module": attr.string(mandatory = True),
        "out": attr.output(mandatory = True),
        "_template": attr.label(
            default = "//tools:module_main.py.tpl",
            allow_single_file = True,
        ),
    },
)

def py_module_binary(name, module, deps = [], **kwargs):
    """py_binary `name` that runs `module` as __main__ (like `python -m module`)."""
    main = "_%s_main.py" % name
    _module_main(
        name = "_%s_main" % name,
        module = module,
        out = main,
    )
    native.py_binary(
        name = name,
        srcs = [main],
        main = main,
        deps = deps,
        python_version = "PY3",
        srcs_version = "PY3",
        **kwargs
    )
