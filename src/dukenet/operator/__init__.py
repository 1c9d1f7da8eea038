"""An agent operator's view: their own agents and the tasks those agents ran."""
