"""Ship the letter templates inside the wheel, from their one source: the top-level templates/.

IT installs a built wheel (`pip install .`), not a checkout, and a wheel holds packages only:
without this, `advising run` on a server finds no letter template. The build copies templates/
into flows/letters/templates/; a checkout (editable install) reads templates/ directly.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

SOURCE = Path(__file__).resolve().parent / "templates"


class BuildWithTemplates(build_py):
    """build_py, plus the templates copied where flows.settings looks for a packaged copy."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads templates/ in the checkout
        target = Path(self.build_lib) / "flows" / "letters" / "templates"
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(SOURCE, target)


setup(cmdclass={"build_py": BuildWithTemplates})
