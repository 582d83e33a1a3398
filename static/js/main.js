// page entry (see issue 4)
