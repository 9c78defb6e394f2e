bash 2
